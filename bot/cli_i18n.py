"""``labbot i18n missing``: the texts of the code that the Chinese catalogue lacks, as ``.po`` entries to fill in.

Extraction is Babel's own (the same as ``pybabel extract``), over the packages people read text from; the keywords
are the ones ``services.i18n`` defines. tests/foundation/test_i18n.py uses the same two functions, so what the
test reports is what this command prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from services.i18n import CHINESE, LOCALE_DIR, load_catalog

ROOT = Path(__file__).resolve().parent.parent
SOURCE_PACKAGES = ("bot", "handlers", "services", "config")
KEYWORDS = {"_": None, "gettext": None, "N_": None, "ngettext": (1, 2)}

i18n_app = typer.Typer(help="Translation catalogues (config/locale).", no_args_is_help=True)


@dataclass(frozen=True)
class SourceText:
    """One translatable text of the code: its msgid (a pair for plurals) and where it is."""

    msgid: str | tuple[str, str]
    where: str


def extract_texts(root: Path = ROOT) -> list[SourceText]:
    """Every literal passed to ``_``/``N_``/``gettext``/``ngettext`` in the source packages, in file order."""
    from babel.messages.extract import extract_from_dir

    texts: list[SourceText] = []
    for package in SOURCE_PACKAGES:
        for filename, lineno, message, _comments, _context in extract_from_dir(
            root / package, method_map=[("**.py", "python")], keywords=KEYWORDS, strip_comment_tags=True
        ):
            if isinstance(message, tuple):
                if not message[0]:
                    continue
                msgid: str | tuple[str, str] = (message[0], message[1])
            elif message:
                msgid = message
            else:
                continue
            texts.append(SourceText(msgid, f"{package}/{filename}:{lineno}"))
    return texts


def untranslated(language: str = CHINESE, root: Path = ROOT, locale_dir: Path = LOCALE_DIR) -> list[SourceText]:
    """The source texts ``language``'s catalogue has no (non-fuzzy, non-empty) translation for, first place each."""
    book = load_catalog(language, locale_dir)
    seen: set[str | tuple[str, str]] = set()
    lacking = []
    for text in extract_texts(root):
        if text.msgid in seen:
            continue
        seen.add(text.msgid)
        known = book.plurals if isinstance(text.msgid, tuple) else book.messages
        if text.msgid not in known:
            lacking.append(text)
    return lacking


def _po_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def as_po_entries(texts: list[SourceText]) -> str:
    """``texts`` as empty ``.po`` entries (msgstr to be written by a translator)."""
    blocks = []
    for text in texts:
        if isinstance(text.msgid, tuple):
            blocks.append(f"#: {text.where}\nmsgid {_po_string(text.msgid[0])}\nmsgid_plural "
                          f'{_po_string(text.msgid[1])}\nmsgstr[0] ""\n')
        else:
            blocks.append(f'#: {text.where}\nmsgid {_po_string(text.msgid)}\nmsgstr ""\n')
    return "\n".join(blocks)


@i18n_app.command("missing")
def missing_command(language: str = typer.Option(CHINESE, help="The catalogue to check.")) -> None:
    """Print the texts the catalogue lacks as .po entries; exit 1 when there are any."""
    lacking = untranslated(language)
    if not lacking:
        typer.echo(f"{language}: every text of the code is translated")
        return
    typer.echo(as_po_entries(lacking))
    typer.echo(f"# {len(lacking)} texts lack a {language} translation", err=True)
    raise typer.Exit(1)
