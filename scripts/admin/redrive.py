"""List and re-drive approvals that could not start the deploy pipeline (the trigger's dead-letter queue).

    python -m scripts.admin.redrive list    --queue-url URL
    python -m scripts.admin.redrive redrive --queue-url URL --function NAME [--dry-run]

Both values are outputs of the project stack (TriggerDeadLetterQueueUrl, TriggerFunctionName). Re-driving
invokes the trigger synchronously with each dead-lettered event and deletes the message only when the
invocation succeeded; a failed one stays in the queue with its error printed. Safe to repeat: the trigger
looks its pipeline up by name first, so an approval whose pipeline did start meanwhile starts nothing new.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

MAX_MESSAGES = 10  # per ReceiveMessage call (the SQS maximum)
VISIBILITY_SECONDS = 120  # a message being re-driven is hidden this long from another run


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    receipt: str
    event: Any  # the EventBridge event the trigger could not handle (None: not JSON)
    error: str  # why it was dead-lettered, when SQS carries it

    def summary(self) -> str:
        detail = self.event.get("detail", {}) if isinstance(self.event, dict) else {}
        return (
            f"{self.message_id}: {detail.get('ModelApprovalStatus', '?')} "
            f"{detail.get('ModelPackageArn', '(not a model package event)')}"
            + (f" at {self.event.get('time')}" if isinstance(self.event, dict) else "")
            + (f" - {self.error}" if self.error else "")
        )


def receive(sqs: Any, queue_url: str, visibility: int = VISIBILITY_SECONDS) -> list[DeadLetter]:
    """Every message in the queue, hidden for `visibility` seconds while we look at them."""
    found: dict[str, DeadLetter] = {}
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=MAX_MESSAGES,
            VisibilityTimeout=visibility,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        fresh = [m for m in batch if m["MessageId"] not in found]
        if not fresh:
            return list(found.values())
        for message in fresh:
            try:
                event = json.loads(message["Body"])
            except ValueError:
                event = None
            attributes = message.get("MessageAttributes") or {}
            error = (attributes.get("ErrorMessage") or attributes.get("ERROR_MESSAGE") or {}).get(
                "StringValue", ""
            )
            found[message["MessageId"]] = DeadLetter(
                message["MessageId"], message["ReceiptHandle"], event, error
            )


Invoke = Callable[[Any], str | None]  # an event -> None on success, else the error


def lambda_invoker(lambda_client: Any, function: str) -> Invoke:
    """Invoke the trigger synchronously; its raised error comes back as FunctionError."""

    def invoke(event: Any) -> str | None:
        answer = lambda_client.invoke(
            FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        if answer.get("FunctionError"):
            body = json.loads(answer["Payload"].read() or b"{}")
            return str(body.get("errorMessage") or answer["FunctionError"])
        return None

    return invoke


def redrive(
    sqs: Any, queue_url: str, invoke: Invoke, *, dry_run: bool = False
) -> list[tuple[DeadLetter, str]]:
    """Send each dead-lettered event to the trigger again; delete those it handled. (letter, outcome)."""
    outcomes = []
    for letter in receive(sqs, queue_url, visibility=0 if dry_run else VISIBILITY_SECONDS):
        if dry_run:
            outcomes.append((letter, "would re-drive" if letter.event is not None else "kept: not JSON"))
            continue
        error = "the body is not JSON" if letter.event is None else invoke(letter.event)
        if error is None:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=letter.receipt)
            outcomes.append((letter, "re-driven"))
        else:  # visible again at once, for the next run
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=letter.receipt, VisibilityTimeout=0
            )
            outcomes.append((letter, f"kept: {error}"))
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    import boto3

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["list", "redrive"])
    parser.add_argument("--queue-url", required=True, help="the stack output TriggerDeadLetterQueueUrl")
    parser.add_argument("--function", help="the stack output TriggerFunctionName (redrive)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be re-driven")
    args = parser.parse_args(argv)
    sqs = boto3.client("sqs")
    if args.action == "list":
        letters = receive(sqs, args.queue_url, visibility=0)
        for letter in letters:
            print(letter.summary())
        print(f"{len(letters)} dead-lettered approval(s)")
        return 0
    if not args.function:
        parser.error("redrive needs --function (the stack output TriggerFunctionName)")
    outcomes = redrive(
        sqs, args.queue_url, lambda_invoker(boto3.client("lambda"), args.function), dry_run=args.dry_run
    )
    for letter, outcome in outcomes:
        print(f"{letter.summary()}: {outcome}")
    kept = sum(1 for _, outcome in outcomes if outcome.startswith("kept"))
    print(f"{len(outcomes) - kept} re-driven, {kept} kept")
    return 1 if kept else 0


if __name__ == "__main__":
    sys.exit(main())
