"""Start the feature browser with its data layer already imported.

    python apps/launch.py [streamlit options] -- --root runs      (what `make browse` runs)

Same as ``streamlit run apps/browser.py ...``, except that pyarrow, pandas, the store reader and
the app's own modules are imported, and pyarrow's Parquet reader is initialised (a tiny table
written and read back in memory: about 0.2 s of CPU on its first use), before the server starts
listening, in the server's own process: the first page no longer pays for them (about a second on
a 2-core machine, more under load). The first eight stores under the root (as many as the app's
cache holds) are also opened, in a background thread while the server starts (about 0.1-0.2 s
each, cold).
"""

import sys
import threading
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


def _warm_stores(argv: list[str]) -> None:
    """Open the first stores under the root into the app's store cache (``open_store`` is a
    process-wide ``st.cache_resource``), so the first feature page finds its store open."""
    from interp.browser import find_stores
    from interp.errors import InterpError

    root = browser_views.root_folder(argv[argv.index("--") + 1 :] if "--" in argv else [])  # the app's own args
    for path in find_stores(root)[:8]:  # the cache holds 8
        try:
            browser_views.store_at(root / path)
        except (InterpError, OSError, ValueError):  # a broken store is reported by the page that opens it
            pass


if __name__ == "__main__":
    _warm_parquet()
    threading.Thread(target=_warm_stores, args=(sys.argv[1:],), daemon=True).start()
    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("browser.py")), *sys.argv[1:]]
    sys.exit(cli.main())
