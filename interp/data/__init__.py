"""Text for the pipeline: sources (built-in corpus, local files, hub datasets), tokenisation
with BOS, and packing into fixed-length rows with per-token doc ids and character offsets.

    src = load_text("builtin:stdlib-docs", shuffle_seed=0)
    toks = tokenize(src, tokenizer, seq_len=128, n_tokens=100_000)   # toks.tokens: [B, 128]
"""

from interp.data.packing import TokenizedText, tokenize
from interp.data.sources import Document, TextSource, load_text, parse_spec

__all__ = ["Document", "TextSource", "TokenizedText", "load_text", "parse_spec", "tokenize"]
