"""The one annotator factory the command line and the pipeline share."""

from __future__ import annotations

import pytest

from annotation.registry import ANNOTATORS, make_annotator
from annotation.verifier import VerifierAnnotator
from preference.pairs import Pair
from rlhfkit.core.errors import InputError


def test_the_verifier_by_name_judges_in_the_mode_asked_for():
    pair = Pair(prompt="Write a haiku. Your entire response should be in English, and in all lowercase letters.",
                response_a="leaves fall Slowly down", response_b="leaves fall slowly down",
                metadata={"instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]})
    annotator = make_annotator("verifier", mode="loose")
    assert isinstance(annotator, VerifierAnnotator)
    [record] = annotator.annotate([pair])
    assert record is not None and record.label.value == "b"


@pytest.mark.parametrize(("name", "options", "message"), [
    ("gpt", {}, "unknown annotator 'gpt'"),
    ("reward", {}, "needs a reward model folder"),
    ("verifier", {"mode": "lenient"}, "'strict' or 'loose'"),
])
def test_bad_names_and_missing_settings_are_input_errors(name, options, message):
    with pytest.raises(InputError, match=message):
        make_annotator(name, **options)
    assert set(ANNOTATORS) == {"verifier", "judge", "reward"}
