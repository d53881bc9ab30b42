"""Start the feature browser with its data layer already imported.

    python apps/launch.py [streamlit options] -- --root runs      (what `make browse` runs)

Same as ``streamlit run apps/browser.py ...``, except that pyarrow, pandas, the store reader and
the app's own modules are imported, and pyarrow's Parquet reader is initialised (a tiny table
written and read back in memory: about 0.2 s of CPU on its first use), before the server starts
listening, in the server's own process: the first page no longer pays for them (about a second on
a 2-core machine, more under load).
"""

import sys
from pathlib import Path

import pandas  # noqa: F401
import pyarrow.compute  # noqa: F401
import pyarrow.dataset  # noqa: F401 (read_table of a path goes through it)
import pyarrow.parquet  # noqa: F401
from streamlit.web import cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `interp`
import interp.browser.labels  # noqa: E402, F401
import interp.browser.store  # noqa: E402, F401

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the app's modules, as browser.py imports them
import browser_html  # noqa: E402, F401
import browser_steer  # noqa: E402, F401
import browser_views  # noqa: E402, F401


def _warm_parquet() -> None:
    import io

    import pyarrow as pa

    buf = io.BytesIO()
    pyarrow.parquet.write_table(pa.table({"a": [1], "s": ["x"]}), buf, write_page_checksum=True)
    buf.seek(0)
    pyarrow.parquet.read_table(buf, page_checksum_verification=True).to_pylist()


if __name__ == "__main__":
    _warm_parquet()
    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("browser.py")), *sys.argv[1:]]
    sys.exit(cli.main())
