"""The runner: claim due work, execute it, write results, keep leases alive.

All coordination is in the database, so any number of identical runners can run and any of
them may die. `supervisor` reads as the list of duties; each lives in a module of its own.
"""

from .background import background_runner
from .supervisor import Runner, run_inline, run_runner

__all__ = ["Runner", "background_runner", "run_inline", "run_runner"]
