"""The module torch's elastic launcher starts in each process: `python -m runtime.worker SPEC`."""

import sys

from runtime.launch import worker_main

if __name__ == "__main__":
    worker_main(sys.argv[1])
