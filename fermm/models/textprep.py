"""Text cleaning shared by every text-reading model: user text is normalised, markup is never
interpreted, and very long text is truncated (the caller is told)."""
from __future__ import annotations

import html
import re
import unicodedata

MAX_CHARS = 2000  # longer input is truncated (DAIR-AI sentences are < 300 characters)
TOKEN = re.compile(r"[a-z0-9']+")


def clean_text(text: str | None, max_chars: int = MAX_CHARS) -> tuple[str, list[str]]:
    """Normalised plain text and notes for the user (empty, truncated, markup removed)."""
    notes, text = [], (text or "").strip()
    n = len(text)
    # cut before normalising: an API client can send megabytes (NFKC may lengthen text, hence the slack)
    text = unicodedata.normalize("NFKC", text[:2 * max_chars]).strip()
    if len(text) > max_chars or n > 2 * max_chars:
        notes.append(f"the text was {n:,} characters; only the first {max_chars:,} were used")
        text = text[:max_chars]
    text = html.unescape(text)
    stripped = re.sub(r"<[^>]{0,200}>", " ", text)  # markup is never rendered, and its tags are not words
    if stripped != text:
        notes.append("HTML tags in the text were ignored")
    text = " ".join(stripped.split())
    if not text:
        notes.append("the text is empty")
    return text, notes


def words(text: str) -> list[str]:
    return TOKEN.findall(text.lower())
