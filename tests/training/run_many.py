"""Run several single-process trainings in one interpreter: argv lists as one JSON argument (tests only).

A run that stops with InputError prints `INPUT_ERROR <index>: <message>` and the next run goes on.
"""

import json
import sys

from colossal_lang.errors import InputError
from colossal_lang.training.config import parse_train_args
from colossal_lang.training.loop import train

if __name__ == "__main__":
    for index, argv in enumerate(json.loads(sys.argv[1])):
        try:
            train(parse_train_args(argv))
        except InputError as error:
            print(f"INPUT_ERROR {index}: {error}", flush=True)
