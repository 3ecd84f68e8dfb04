import sys

from bench.sim.cli import add_arguments, main, run_from_args

__all__ = ["add_arguments", "main", "run_from_args"]

if __name__ == "__main__":
    sys.exit(main())
