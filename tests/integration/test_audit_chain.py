"""Tamper evidence on SQLite and PostgreSQL: edits, deletions and swaps named by `verify`;
exports verified with no database (issue 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from journeys.touchpoint import Touchpoint
from journeys.verify_export import verify_export
from projections.system import System
from tests.factories import b2b_deal, rid, tp


def _store(system: System) -> None:
    system.record([Touchpoint(**p) for p in b2b_deal()])
    system.record([tp("a1", "ad_clicked", 0, "initech"), tp("a2", "lead_captured", 1, "initech", deal_id="D-1")])
    system.record([tp("a3", "demo_delivered", 2, "initech", deal_id="D-1"), tp("g1", "meeting_held", 3, "globex", deal_id="D-1")])


def _raw(system: System, statement: str, params: list) -> None:
    """A database administrator's own statement, outside the service."""
    system.view.execute(statement, params)


def _event_table(system: System) -> tuple[str, str, str]:
    audit = system.audit
    return audit.events, audit.nid, ("?" if system.settings.is_sqlite else "%s")


def _record_param(system: System, record: str) -> str:
    return system.audit._record_param(record)


def test_an_untouched_store_verifies_clean_and_a_checkpoint_seals_it(system: System):
    _store(system)
    first = system.audit.checkpoint()
    system.record([tp("g2", "proposal_sent", 90, "globex")])
    second = system.audit.checkpoint()
    assert second.previous == first.root and second.position > first.position and second.heads == 2
    report = system.audit.verify(root=first.root)
    assert report.ok, report.problems
    assert report.events == (1 + 15 + 2) + (1 + 3) and report.records == 2  # Registered events included
    assert report.unsealed == 1  # g2 came after the checkpoint of the root given
    assert system.audit.verify().unsealed == 0  # the latest checkpoint sealed everything
    wrong = system.audit.verify(root="f" * 64).problems
    assert len(wrong) == 1 and wrong[0].startswith("the root given matches no checkpoint (2 stored)")
    system.record([tp("g3", "meeting_held", 91, "globex")])
    assert system.audit.verify().unsealed == 1


def test_an_edited_event_is_named(system: System):
    _store(system)
    system.audit.checkpoint()
    events, nid, _ = _event_table(system)
    record = rid(system, "globex")
    row = system.view.query(f"SELECT {nid} AS n, state FROM {events} WHERE originator_id = ? AND originator_version = 5",
                            [_record_param(system, record)])[0]
    state = bytes(row["state"]).replace(b'"call_connected"', b'"deal_lost"')
    assert state != bytes(row["state"])
    _raw(system, f"UPDATE {events} SET state = ? WHERE {nid} = ?", [state, row["n"]])
    report = system.audit.verify()
    assert not report.ok
    assert report.problems[0] == (
        f"record {record} version 5 (notification {row['n']}): does not follow from version 4's hash: "
        "version 5 was edited, or version 4 was edited together with its hash"
    )
    assert len(report.problems) == 1  # the checkpoint's heads are untouched: only the edit is named


def test_a_deleted_event_is_named(system: System):
    _store(system)
    events, nid, _ = _event_table(system)
    record = rid(system, "initech")
    n = system.view.query(f"SELECT {nid} AS n FROM {events} WHERE originator_id = ? AND originator_version = 2",
                          [_record_param(system, record)])[0]["n"]
    _raw(system, f"DELETE FROM {events} WHERE {nid} = ?", [n])
    problems = system.audit.verify().problems
    assert f"record {record}: version 3 follows version 1: version 2 deleted" in problems
    assert (f"record {record} version 2 (notification {n}): its hash is stored but the event is gone: deleted"
            in problems)
    # The same deletion with the hash removed too is still found, by the version gap.
    _raw(system, f"DELETE FROM {system.audit.chain} WHERE notification_id = ?", [n])
    assert system.audit.verify().problems == [f"record {record}: version 3 follows version 1: version 2 deleted"]


def test_swapped_rows_are_named(system: System):
    _store(system)
    events, nid, _ = _event_table(system)
    record = _record_param(system, rid(system, "globex"))
    rows = system.view.query(
        f"SELECT {nid} AS n, state FROM {events} WHERE originator_id = ? AND originator_version IN (3, 4) "
        "ORDER BY originator_version", [record])
    _raw(system, f"UPDATE {events} SET state = ? WHERE {nid} = ?", [bytes(rows[1]["state"]), rows[0]["n"]])
    _raw(system, f"UPDATE {events} SET state = ? WHERE {nid} = ?", [bytes(rows[0]["state"]), rows[1]["n"]])
    problems = system.audit.verify().problems
    assert [p.split(": ", 1)[0] for p in problems] == [
        f"record {rid(system, 'globex')} version 3 (notification {rows[0]['n']})",
        f"record {rid(system, 'globex')} version 4 (notification {rows[1]['n']})",
    ]


def test_a_rewritten_chain_is_caught_by_the_checkpoint(system: System):
    """An administrator who edits an event and recomputes its hash is caught by a checkpoint."""
    from journeys.chain import event_hash

    _store(system)
    checkpoint = system.audit.checkpoint()
    events, nid, _ = _event_table(system)
    record = rid(system, "initech")
    rows = system.view.query(f"SELECT {nid} AS n, originator_version AS v, topic, state FROM {events} "
                             "WHERE originator_id = ? ORDER BY originator_version", [_record_param(system, record)])
    forged = bytes(rows[-1]["state"]).replace(b'"demo_delivered"', b'"deal_lost"')
    previous = system.view.query(f"SELECT hash FROM {system.audit.chain} WHERE notification_id = ?", [rows[-2]["n"]])
    digest = event_hash(previous[0]["hash"], record, rows[-1]["v"], rows[-1]["topic"], forged)
    _raw(system, f"UPDATE {events} SET state = ? WHERE {nid} = ?", [forged, rows[-1]["n"]])
    _raw(system, f"UPDATE {system.audit.chain} SET hash = ? WHERE notification_id = ?", [digest, rows[-1]["n"]])
    problems = system.audit.verify().problems
    assert len(problems) == 1 and problems[0].startswith(f"checkpoint {checkpoint.seq} (position {checkpoint.position})")


def test_an_export_verifies_offline_and_an_edited_line_fails(system: System, tmp_path: Path):
    _store(system)
    system.audit.checkpoint()
    system.record([tp("a4", "contract_signed", 9, "initech", deal_id="D-1")])  # after the checkpoint
    records = [rid(system, "globex"), rid(system, "initech")]
    file = tmp_path / "deal.jsonl"
    file.write_text("".join(system.audit.export(records, selection={"deal": "D-1"})))
    lines = file.read_text().splitlines()
    manifest = json.loads(lines[-1])["manifest"]
    root = manifest["checkpoint"]["root"]
    result = verify_export(file, root=root)
    assert result.ok, result.problems
    assert result.events == len(lines) - 1 and result.unsealed == 1  # a4 came after the checkpoint
    assert not verify_export(file, root="0" * 64).ok

    edited = json.loads(lines[3])
    edited["state"] = edited["state"][:-4] + ("AAAA" if not edited["state"].endswith("AAAA") else "BBBB")
    (tmp_path / "edited.jsonl").write_text("\n".join([*lines[:3], json.dumps(edited), *lines[4:]]) + "\n")
    bad = verify_export(tmp_path / "edited.jsonl", root=root)
    assert not bad.ok and bad.problems[0].startswith("line 4: "), bad.problems

    dropped = [*lines[:2], *lines[3:]]
    (tmp_path / "dropped.jsonl").write_text("\n".join(dropped) + "\n")
    assert verify_export(tmp_path / "dropped.jsonl", root=root).problems[0].startswith("line 3: ")


@pytest.mark.parametrize("selector", ["customer", "deal"])
def test_verify_a_customer_or_a_deal(system: System, selector: str):
    _store(system)
    system.audit.checkpoint()
    records = [rid(system, "initech")] if selector == "customer" else [rid(system, "globex"), rid(system, "initech")]
    report = system.audit.verify(records)
    assert report.ok and report.records == len(records)


def _swap_positions(system: System, a: int, b: int) -> None:
    """Swap two events' places in the log (their notification ids), bytes untouched."""
    events, nid, _ = _event_table(system)
    for old, new in ((a, -1), (b, a), (-1, b)):
        _raw(system, f"UPDATE {events} SET {nid} = ? WHERE {nid} = ?", [new, old])


def test_events_swapped_in_the_log_are_named_and_their_neighbours_are_not(system: System):
    _store(system)
    events, nid, _ = _event_table(system)
    record = rid(system, "globex")
    rows = system.view.query(f"SELECT {nid} AS n FROM {events} WHERE originator_id = ? ORDER BY originator_version",
                             [_record_param(system, record)])
    _swap_positions(system, rows[1]["n"], rows[2]["n"])  # versions 2 and 3
    problems = system.audit.verify().problems
    assert [p.split(": ")[-1] for p in problems] == ["moved or swapped", "moved or swapped"], problems
    assert f"record {record} version 2 " in problems[0] and f"record {record} version 3 " in problems[1]


def test_an_edit_with_its_hash_recomputed_names_both_sides_of_the_broken_link(system: System):
    from journeys.chain import event_hash

    _store(system)
    events, nid, _ = _event_table(system)
    record = rid(system, "initech")
    rows = system.view.query(f"SELECT {nid} AS n, originator_version AS v, topic, state FROM {events} "
                             "WHERE originator_id = ? ORDER BY originator_version", [_record_param(system, record)])
    forged = bytes(rows[1]["state"]).replace(b'"ad_clicked"', b'"deal_lost"')
    assert forged != bytes(rows[1]["state"])
    previous = system.view.query(f"SELECT hash FROM {system.audit.chain} WHERE notification_id = ?", [rows[0]["n"]])
    _raw(system, f"UPDATE {events} SET state = ? WHERE {nid} = ?", [forged, rows[1]["n"]])
    _raw(system, f"UPDATE {system.audit.chain} SET hash = ? WHERE notification_id = ?",
         [event_hash(previous[0]["hash"], record, 2, rows[1]["topic"], forged), rows[1]["n"]])
    assert system.audit.verify().problems == [
        f"record {record} version 3 (notification {rows[2]['n']}): does not follow from version 2's hash: "
        "version 3 was edited, or version 2 was edited together with its hash"
    ]


def test_an_export_names_the_first_problem_of_a_chain_not_every_line_after_it(system: System, tmp_path: Path):
    _store(system)
    system.audit.checkpoint()
    file = tmp_path / "all.jsonl"
    file.write_text("".join(system.audit.export(None)))
    lines = file.read_text().splitlines()
    edited = json.loads(lines[2])  # the third event of the first record: more follow it
    assert json.loads(lines[3])["record"] == edited["record"]
    edited["state"] = edited["state"][:-4] + ("AAAA" if not edited["state"].endswith("AAAA") else "BBBB")
    (tmp_path / "edited.jsonl").write_text("\n".join([*lines[:2], json.dumps(edited), *lines[3:]]) + "\n")
    problems = verify_export(tmp_path / "edited.jsonl").problems
    assert problems[0].startswith("line 3: ") and "edited" in problems[0]
    assert not [p for p in problems if p.startswith("line ")][1:], problems  # the lines after it are not blamed


def _columns(system: System) -> dict[str, list[str]]:
    audit = system.audit
    nid = [] if system.settings.is_sqlite else ["notification_id"]
    return {audit.events: [*nid, "originator_id", "originator_version", "topic", "state"],
            audit.chain: ["notification_id", "record_id", "version", "hash"]}


def _edits(value, sqlite: bool) -> list:
    """Hostile replacements for a stored value: NULL, truncation, another type (SQLite keeps any type)."""
    found: list = [None]
    if isinstance(value, (bytes, memoryview)):
        found += [bytes(value)[: len(bytes(value)) // 2], b""]
        if sqlite:
            found += [bytes(value).decode("latin-1"), 7]
    elif isinstance(value, str):
        found += [value[: len(value) // 2], value + " "]
        if sqlite:
            found += [value.encode(), 3.5]
    elif isinstance(value, int):
        found += [value + 1, -value]
        if sqlite:
            found += [str(value) + "x", b"\x00\x01"]
    else:
        found += [str(value)[:8]]
    return found


def test_fuzzed_edits_of_any_column_are_named_and_never_crash_the_verifier(system: System):
    """Random edits of every column of the events and chain tables, one at a time and undone after:
    the verifier (with the checkpoint's root) names each as a problem and never raises."""
    import random

    _store(system)
    root = system.audit.checkpoint().root
    sqlite = system.settings.is_sqlite
    rng = random.Random(19)
    events, nid, _ = _event_table(system)
    tried = 0
    for table, columns in _columns(system).items():
        key = "rowid" if sqlite else nid if table == events else "notification_id"  # what the edits leave alone
        positions = [r["n"] for r in system.view.query(f"SELECT {key} AS n FROM {table}")]
        for column in columns:
            for position in rng.sample(positions, 4):
                original = system.view.query(f"SELECT {column} AS v FROM {table} WHERE {key} = ?", [position])[0]["v"]
                for edit in _edits(original, sqlite):
                    where_key = edit if column == key else position
                    try:
                        _raw(system, f"UPDATE {table} SET {column} = ? WHERE {key} = ?", [edit, position])
                    except Exception:  # the database refused it (a type or a constraint): nothing to verify
                        continue
                    try:
                        report = system.audit.verify(root=root)
                        assert not report.ok, (table, column, repr(edit)[:60])
                        tried += 1
                    finally:
                        if edit is None and column == key:
                            raise AssertionError("a NULL key column was accepted: cannot undo")
                        _raw(system, f"UPDATE {table} SET {column} = ? WHERE {key} = ?", [original, where_key])
    assert system.audit.verify(root=root).ok
    assert tried >= 40, tried


def test_the_verify_command_names_bytes_turned_into_text_and_exits_1_without_a_traceback(system: System):
    """SQLite stores the result of substr(state, ...) || x'20' || ... as TEXT: the verifier crashed on it."""
    from typer.testing import CliRunner

    from api.cli import app
    from tests.integration.test_cli import env_for

    _store(system)
    events, nid, _ = _event_table(system)
    n = system.view.query(f"SELECT MIN({nid}) AS n FROM {events}")[0]["n"]
    edit = ("substr(state, 1, 10) || x'20' || substr(state, 12)" if system.settings.is_sqlite
            else "substring(state from 1 for 10) || '\\x20'::bytea || substring(state from 12)")
    _raw(system, f"UPDATE {events} SET state = {edit} WHERE {nid} = ?", [n])
    result = CliRunner().invoke(app, ["verify"], env=env_for(system.settings))
    assert result.exit_code == 1, result.output
    assert "BROKEN" in result.output and "edited" in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
