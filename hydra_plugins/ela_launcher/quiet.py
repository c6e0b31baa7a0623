"""Imported first by the fork launcher's forkserver, so the jobs forked from it inherit this filter.

multiprocessing re-runs the main module (`python -m ela.run`) in each child as `__mp_main__`; the forkserver
imported `ela.run` already, and runpy warns about exactly that, once per job. It is expected here.
"""

import warnings

warnings.filterwarnings("ignore", message=r"'ela\.run' found in sys\.modules", category=RuntimeWarning)
