"""The paragraph appended to a session turn's question: what the turn's REPL holds beyond ``context``.

Written as Python comments, so that a question that is code (the scripted model's ``code`` policy runs
the query as the cell) stays valid code with the paragraph appended.
"""

from __future__ import annotations


def turn_paragraph(session: str, turn: int, notes: int) -> str:
    earlier = turn - 1
    return (
        f"\n\n# This question is turn {turn} of session {session}: `history` holds the {earlier} earlier "
        f"turns'\n# questions and answers (newest last), `notes` holds the {notes} notes earlier turns "
        "remembered,\n# and the variables the previous turn left are still set. Call remember(text) to "
        "keep a note\n# for later turns.\n"
    )
