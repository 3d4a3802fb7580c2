"""A name in no record and after no title leaves no trace (issue 21, item 5).

"please ask Wouter Verbeek about it": no record of the Acme systems holds the name and no
title marks it, so only the detector's given names (``policies._names``) can find it. A
real ``umiq worker`` at ``--loglevel DEBUG`` on RabbitMQ and Postgres, with the scripted
role model and the Acme services, runs a task whose request holds it (and mails it to a
colleague) and refuses a malformed one that holds it; then the prompts, the DEBUG log,
every Postgres row, the task result, the dead-letter queue as RabbitMQ keeps it and the
files of the connectors and the worker are searched for it.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from tests.support.cli import raw_dead_letters, umiq, worker_env
from tests.support.leaks import database_rows, search
from worker.process import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The seeded name and its surname: in no Acme record, no title before them.
SEEDED = {"Wouter Verbeek": "a name in no record", "Verbeek": "the surname of a name in no record"}
QUERY = (
    "Mail pieter.jansen@acme-corp.nl that leave request LR-0013 is still pending, and "
    "please ask Wouter Verbeek about it."
)
SCRIPT = [
    {"tool": "get_leave_request", "arguments": {"request_id": "LR-0013"}},
    {"tool": "send_email", "arguments": {"to": "$EMAIL", "subject": "Leave request LR-0013",
                                         "body": "Please ask $NAME about LR-0013."}},
]  # fmt: skip


def _files(*folders: Path) -> list[tuple[str, str]]:
    """Every file under ``folders`` as text (SQLite files too: their text is UTF-8)."""
    return [
        (f"file {path.name}", path.read_bytes().decode("utf-8", errors="replace"))
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]


def test_a_name_in_no_record_reaches_no_prompt_log_row_letter_or_file(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str]
) -> None:
    """The name is tokenized in every prompt, masked in the DEBUG log, absent from every
    Postgres row and the result, sealed in the dead letter and absent from the sent-log,
    yet the mail delivers it and ``umiq keys decrypt`` gives it back."""
    from examples.acme.serve import start_acme
    from worker.celery_app import TASK_NAME, create_app
    from worker.settings import Settings

    queue, dead = queue_names
    tag = uuid.uuid4().hex[:8]
    task_id, refused_id = f"unrecorded-{tag}", f"unrecorded-{tag}-refused"
    prompt_log, log_path = tmp_path / "prompts.jsonl", tmp_path / "worker.log"
    with start_acme(tmp_path / "acme") as acme:
        names = acme.write_known_names(tmp_path / "known-names.txt")
        assert not any("Verbeek" in name for name in acme.known_names())
        env = worker_env(tmp_path / "data", amqp_url, postgres_url, queue_names,
                         connectors=acme.connectors_config())  # fmt: skip
        env.update({"UMIQ_TEST_PROMPT_LOG": str(prompt_log),
                    "UMIQ_PII_KNOWN_NAMES_FILE": str(names)})  # fmt: skip
        app = create_app(Settings(data_dir=tmp_path / "client", broker_url=amqp_url,
                                  database_url=postgres_url, queue=queue,
                                  dead_letter_queue=dead))  # fmt: skip
        try:
            with WorkerProcess(env, log_path, ("--loglevel", "DEBUG"), ready_timeout=180):
                sent = app.send_task(TASK_NAME, args=[{
                    "task_id": task_id, "department": "hr", "query": QUERY,
                    "requested_by": "leak-test", "context": {"script": SCRIPT}}])  # fmt: skip
                result = sent.get(timeout=180)
                # A field no envelope has: the worker refuses the message to the DLQ.
                app.send_task(TASK_NAME, args=[{
                    "task_id": refused_id, "department": "hr", "query": QUERY,
                    "requested_by": "leak-test", "priority": "high"}])  # fmt: skip
                deadline = time.monotonic() + 60
                while "message.refused" not in log_path.read_text(encoding="utf-8"):
                    assert time.monotonic() < deadline, "the malformed task was not refused"
                    time.sleep(0.5)
                letters = [
                    part
                    for headers, body in raw_dead_letters(env)
                    for part in (("dead letter headers", json.dumps(headers, default=str)),
                                 ("dead letter body", body.decode("utf-8", errors="replace")))
                ]  # fmt: skip
        finally:
            app.close()
        delivered = acme.messages()
        decrypted = umiq(env, "keys", "decrypt", task_id)
        sent_log = acme.sent_log.read_bytes().decode("utf-8", errors="replace")
        files = [*_files(tmp_path / "data"), (f"connector file {acme.sent_log.name}", sent_log)]

    prompts = prompt_log.read_text(encoding="utf-8")
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    stores = {
        "prompts": [("prompts", prompts)],
        "DEBUG log": [(f"worker log line {n}", line)
                      for n, line in enumerate(log_text.splitlines(), 1)],
        "Postgres": [(f"table {table} row", row) for table, row in database_rows(postgres_url)],
        "result": [("task result", json.dumps(result))],
        "dead-letter queue": letters,
        "files": files,
    }  # fmt: skip
    leaks = {where: [str(leak) for leak in search(SEEDED, haystack)]
             for where, haystack in stores.items()}  # fmt: skip
    assert leaks == {where: [] for where in stores}

    # The search was not blind: each store was there and held what the task left in it.
    assert result["outcome"] == "answered", result
    assert "please ask <NAME_" in prompts  # the model saw a token where the name was
    assert "(args:<redacted> kwargs:<redacted>)" in log_text  # DEBUG was on
    assert any(where == "table task row" for where, _ in stores["Postgres"])
    assert len(letters) == 2 and refused_id in letters[0][1]  # one sealed letter, ours
    # The mail carried the real name, and the sealed records give it back.
    assert [m["body"] for m in delivered] == ["Please ask Wouter Verbeek about LR-0013."]
    assert decrypted.returncode == 0 and "Wouter Verbeek" in decrypted.stdout, decrypted.stderr
