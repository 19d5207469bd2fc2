"""The English stop words a full-text query drops are scikit-learn's list, read without importing scikit-learn."""

from __future__ import annotations

import subprocess
import sys

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from judge.store import lexical


def test_the_shipped_list_is_scikit_learns() -> None:
    assert lexical._stop_words() == frozenset(ENGLISH_STOP_WORDS)


def test_query_terms_drop_stop_words_without_importing_scikit_learn() -> None:
    code = ("import sys; from judge.store.lexical import query_terms; "
            "print(query_terms('Which of the boiling points would be the highest?')); "
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert "which" not in out[0] and "the" not in out[0] and "boiling" in out[0]
    assert out[1] == "False"
