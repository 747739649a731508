"""Run several single-process trainings in one interpreter: runs as one JSON argument (tests only).

Each run is {"argv": [...], "faults": "..."}; `faults` arms colossal_lang.testing.faults for that run alone.
A run that stops with InputError prints `INPUT_ERROR <index>: <message>` and the next run goes on.
"""

import json
import os
import sys

from colossal_lang.errors import InputError
from colossal_lang.testing.faults import ENVIRONMENT
from colossal_lang.training.flags import parse_train_args
from colossal_lang.training.loop import train

if __name__ == "__main__":
    for index, run in enumerate(json.loads(sys.argv[1])):
        os.environ[ENVIRONMENT] = run["faults"]
        try:
            train(parse_train_args(run["argv"]))
        except InputError as error:
            print(f"INPUT_ERROR {index}: {error}", flush=True)
