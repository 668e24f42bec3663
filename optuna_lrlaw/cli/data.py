"""``optuna-lrlaw data``: token corpora for the proxies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Prepare token corpora for proxy training.", no_args_is_help=True, rich_markup_mode=None)


@app.command()
def prepare(
    source: Annotated[Path, typer.Argument(help="A text file, or a folder of them.")],
    out: Annotated[Path, typer.Option(help="Where to write: corpus.bin (training), corpus.val.bin, corpus.json.")],
    tokenizer: Annotated[str, typer.Option(help="byte (256 tokens) or bpe (needs the tokenizers package).")] = "byte",
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size of a BPE tokenizer.")] = 8192,
    val_fraction: Annotated[float, typer.Option(help="Share of files held out for validation.")] = 0.05,
    pattern: Annotated[str, typer.Option(help="Which files of a folder to read, e.g. '*.txt'.")] = "*",
) -> None:
    """Tokenize SOURCE into memory-mapped training and validation files, split by file."""
    from optuna_lrlaw.proxies.data import prepare_corpus

    console = Console(stderr=True)
    with console.status(f"tokenizing {source} ({tokenizer})"):
        corpus = prepare_corpus(
            source, out, tokenizer=tokenizer, vocab_size=vocab_size, val_fraction=val_fraction, pattern=pattern
        )
    tokens = corpus.meta["tokens"]
    print(
        f"{corpus.path}: {tokens['train']:,} training and {tokens['val']:,} validation tokens, "
        f"vocabulary {corpus.vocab_size}"
    )


@app.command()
def builtin() -> None:
    """Prepare (once) the built-in corpus, this Python's standard library, and print where it lives."""
    from optuna_lrlaw.proxies.data import builtin_corpus

    with Console(stderr=True).status("preparing the standard-library corpus"):
        corpus = builtin_corpus()
    print(corpus.path)
