"""Case 10 (and the store half of 11) of issue 18: the browser's data layer refuses files from
outside its root, shows a store's text as text, and reports damaged tables as errors."""

import json
import shutil

import pyarrow.parquet as pq
import pytest

from interp.browser import FeatureStore, StoreError, find_stores


@pytest.fixture
def store_copy(browser_root, tmp_path):
    """A private copy of the topk store under a fresh root (tests damage it)."""
    root = tmp_path / "root"
    shutil.copytree(browser_root / "stores" / "topk", root / "topk")
    return root, root / "topk"


def test_symlinked_file_leading_outside_the_store_is_refused(store_copy, tmp_path):
    root, store = store_copy
    outside = tmp_path / "outside.parquet"
    shutil.copy(store / "features.parquet", outside)
    (store / "features.parquet").unlink()
    (store / "features.parquet").symlink_to(outside)
    with pytest.raises(StoreError, match="outside the store"):
        FeatureStore(store)


def test_symlinked_folder_leading_outside_the_root_is_not_listed(store_copy, tmp_path):
    root, store = store_copy
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(store, elsewhere / "secret")
    (root / "link").symlink_to(elsewhere)
    assert [str(p) for p in find_stores(root)] == ["topk"]


def test_markdown_in_manifest_fields_is_shown_as_text(store_copy):
    from interp.browser.store import describe, plain

    root, store = store_copy
    m = json.loads((store / "manifest.json").read_text())
    m["model_name"] = "![x](https://attacker.example/pixel.png)"
    m["request"]["text"] = "[click](https://attacker.example) ![y](https://attacker.example/y.png)"
    (store / "manifest.json").write_text(json.dumps(m))
    fs = FeatureStore(store)
    for text in (fs.title(), fs.caption()):
        assert "![" not in text and "](" not in text
        assert "attacker.example" in text.replace("\\", "")  # the text itself is kept
    assert plain("a_b") == "a\\_b"
    assert "model" not in describe(root, "missing")  # an unreadable store gets a label, not an error


def _flip_values(path, column):
    """Flip two bytes in the middle of ``column``'s first page of values (dictionary page if any):
    without a checksum the file still reads, with one value changed."""
    meta = pq.ParquetFile(path).metadata
    col = next(i for i in range(meta.num_columns) if meta.schema.column(i).name == column)
    chunk = meta.row_group(0).column(col)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    end = chunk.data_page_offset if chunk.dictionary_page_offset else start + chunk.total_compressed_size
    data = bytearray(path.read_bytes())
    for i in range((start + end) // 2, (start + end) // 2 + 2):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_features_parquet_are_an_error_not_values(store_copy):
    root, store = store_copy
    _flip_values(store / "features.parquet", "max")
    with pytest.raises(StoreError, match="corrupt"):
        FeatureStore(store)


def test_one_corrupt_store_does_not_hide_the_others(store_copy, browser_root):
    from interp.browser.store import describe

    root, store = store_copy
    shutil.copytree(browser_root / "stores" / "dense", root / "dense")
    _flip_values(root / "dense" / "examples.parquet", "value")
    assert [str(p) for p in find_stores(root)] == ["dense", "topk"]
    assert "dense" in describe(root, "dense")
    dense = FeatureStore(root / "dense")
    with pytest.raises(StoreError, match="examples.parquet is corrupt"):
        for i in range(dense.n_features):
            dense.examples(i)
    assert FeatureStore(root / "topk").examples(0).num_rows > 0


def test_flipped_bytes_in_directions_are_an_error_naming_the_file(store_copy):
    """directions.safetensors is checked against the xxh3 digest the manifest recorded at the build;
    a store built before digests were recorded reads without the check."""
    root, store = store_copy
    assert json.loads((store / "manifest.json").read_text())["xxh3"]["directions.safetensors"]
    good = FeatureStore(store).directions()
    path = store / "directions.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"directions\.safetensors is damaged.*rebuild the store"):
        FeatureStore(store).directions()
    m = json.loads((store / "manifest.json").read_text())
    del m["xxh3"]
    (store / "manifest.json").write_text(json.dumps(m))
    assert FeatureStore(store).directions().shape == good.shape
