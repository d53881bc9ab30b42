"""The shipped concept set: sizes, uniqueness, lookup by name."""

import pytest

from interp.data.concepts import load_concepts, neutral_sentences


def test_concept_set_is_complete_and_distinct():
    concepts = load_concepts()
    assert len(concepts) >= 20
    assert len({c.name for c in concepts}) == len(concepts)
    assert all(len(c.sentences) >= 15 and c.description for c in concepts)
    sentences = [s for c in concepts for s in c.sentences] + neutral_sentences()
    assert len(set(sentences)) == len(sentences)
    assert len(neutral_sentences()) >= 20


def test_lookup_by_name():
    assert [c.name for c in load_concepts(["music", "ocean"])] == ["music", "ocean"]
    with pytest.raises(ValueError, match="unknown concept"):
        load_concepts(["no-such-concept"])
