"""The paragraph appended to a session turn's question: what the turn's REPL holds beyond ``context``.

Written as Python comments, so that a question that is code stays valid code with the paragraph
appended. ``question_of`` takes it off again: the scripted model answers the question alone.
"""

from __future__ import annotations

# Where the paragraph starts in a turn's query.
TURN_MARK = "\n\n# This question is turn "


def turn_paragraph(session: str, turn: int, notes: int) -> str:
    earlier = turn - 1
    return (
        f"{TURN_MARK}{turn} of session {session}: `history` holds the {earlier} earlier "
        f"turns'\n# questions and answers (newest last), `notes` holds the {notes} notes earlier turns "
        "remembered,\n# and the variables the previous turn left are still set. Call remember(text) to "
        "keep a note\n# for later turns.\n"
    )


def question_of(query: str) -> str:
    """A session turn's question without the paragraph; any other query unchanged."""
    return query.partition(TURN_MARK)[0]
