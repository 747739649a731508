"""A worker that only says whether HF_TOKEN reached it, then fails (tests of what the launcher forwards)."""

import os
import sys

print(f"rank {os.environ.get('RANK')} sees HF_TOKEN: {'HF_TOKEN' in os.environ}", flush=True)
sys.exit(3)
