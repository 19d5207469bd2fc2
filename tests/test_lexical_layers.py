"""Full-text rows keyed by layer: a search among some layers is a row id range, ties ordered by rule id.

On SQLite a rule's FTS5 row id carries its layer in the top bits (`judge.store.lexical.fts_rowid`), so the
search ranks a layer's rows by row id and score alone and reads the ids of the best only. These tests hold
that to the one-statement-per-text oracle of `tests.test_retrieval_batched` where rules tie (rulings decided
on the same facts score alike), and check that migration 0012 re-keys a database written before it.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import text

from judge.rules.model import LAYER_RANK, Layer, Rule, RulingCase
from judge.rules.textio import read_rulebook
from judge.store import RulebookStore, alembic_config, known_revisions, lexical, migrate, open_engine, schema_revision
from tests.test_retrieval_batched import GROUPS, per_text_search
from tests.test_retrieval_quality import store  # noqa: F401  (the SQLite / PostgreSQL store fixture)

ROOT = Path(__file__).resolve().parent.parent


def _twins(n: int) -> list[Rule]:
    """``n`` rulings on the same facts and ``n`` spec entries with the same text: each group scores alike."""
    rulings = [Rule(id=f"ruling/twin-{i:02d}", layer=Layer.RULING, title="Kettle safety",
                    text="Prefer the answer that warns about the kettle.",
                    case=RulingCase(prompt="Is it safe to boil water in a kettle twice?", response_a="Yes.",
                                    response_b="Yes, but descale it.", holding="B",
                                    rationale="The kettle answer warns about scale."))
               for i in reversed(range(n))]
    entries = [Rule(id=f"spec/twin-{i:02d}", layer=Layer.SPEC, title="Kettles",
                    text="Answers about a kettle mention descaling.") for i in range(n)]
    return [*rulings, *entries]


def test_row_ids_carry_the_layer() -> None:
    for layer in Layer:
        rowid = lexical.fts_rowid(f"{layer.value}/some-rule", layer)
        assert 0 < rowid < 2**63 and rowid >> 60 == LAYER_RANK[layer]
    assert lexical.fts_rowid("spec/a", Layer.SPEC) != lexical.fts_rowid("spec/b", Layer.SPEC)


def test_tied_rules_are_ordered_by_rule_id_as_one_statement_per_text_orders_them(
        store: RulebookStore) -> None:  # noqa: F811
    rules = read_rulebook(ROOT / "rulebook")
    store.sync([*rules, *_twins(12)], author="test", reason="seed")
    texts = ["Can I boil water in a kettle twice?", "descale the kettle", "kettle"]
    # k = 1 and 3: the tie groups (12 alike) reach past the rows a layer first takes (2 k + 1), so the layer
    # is asked again; k = 30: the twins and other rules.
    for k, exclude in ((1, ()), (3, ()), (3, ("ruling/twin-00", "spec/twin-01")), (30, ())):
        found = store.lexical_search_many(texts, GROUPS, k, exclude=exclude)
        with store.engine.connect() as conn:
            assert found == [[per_text_search(conn, t, layers, k, exclude) for layers in GROUPS] for t in texts]
        assert found[0][1][0][0] == ("ruling/twin-01" if exclude else "ruling/twin-00")


def test_migration_0012_keys_full_text_rows_by_layer(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(engine)
    rules = RulebookStore(engine)
    rules.sync([*read_rulebook(ROOT / "rulebook"), *_twins(3)], author="test", reason="seed")
    texts = ["What is the boiling point of water?", "kettle", "Tell me about privacy."]
    expected = rules.lexical_search_many(texts, GROUPS, 5)
    config = alembic_config(engine)
    with engine.begin() as conn:  # back to the row ids written before 0012: a hash of the rule id alone
        config.attributes["connection"] = conn
        command.downgrade(config, "0011_case_vector_model_index")
    assert schema_revision(engine) == ("0011_case_vector_model_index",)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT rowid, layer FROM rule_fts")).all()
    assert rows and any(rowid >> 60 != LAYER_RANK[Layer(layer)] for rowid, layer in rows)
    migrate(engine)
    assert schema_revision(engine) == (known_revisions()[-1],)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT rowid, rule_id, layer FROM rule_fts")).all()
    assert len(rows) == sum(1 for rule in rules.iter_current() if rule.binds)
    assert all(rowid == lexical.fts_rowid(rule_id, Layer(layer)) for rowid, rule_id, layer in rows)
    assert rules.lexical_search_many(texts, GROUPS, 5) == expected
