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
    assert system.audit.verify(root="f" * 64).problems == [f"no checkpoint has the root {'f' * 64}: checkpoints were replaced"]


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
        f"record {record} version 5 (notification {row['n']}): stored bytes do not match their hash: edited"
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
