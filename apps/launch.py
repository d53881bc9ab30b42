"""Start the feature browser with its data layer already imported.

    python apps/launch.py [streamlit options] -- --root runs      (what `make browse` runs)

Same as ``streamlit run apps/browser.py ...``, except that pyarrow, pandas and the store reader are
imported before the server starts listening, in the server's own process: the first page no longer
pays for them (about a second on a 2-core machine, more under load).
"""

import sys
from pathlib import Path

import pandas  # noqa: F401
import pyarrow.compute  # noqa: F401
import pyarrow.parquet  # noqa: F401
from streamlit.web import cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `interp`
import interp.browser.labels  # noqa: E402, F401
import interp.browser.store  # noqa: E402, F401

if __name__ == "__main__":
    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("browser.py")), *sys.argv[1:]]
    sys.exit(cli.main())
