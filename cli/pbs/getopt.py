"""Command lines parsed the way PBS's commands parse theirs: glibc getopt(3).

PBS clients call `getopt(argc, argv, "ainpqrstwxu:fGHJMQEBW:T1F:D:")`, so
flags cluster (`-fx`), an option's value may be attached (`-Fjson`, `-uAlice`)
or follow as the next word, options may come after operands (glibc permutes
argv: `qstat 123 -x`), and `--` ends the options. This module does the same,
plus the few long options HyperBatch adds (`--json`), without importing
anything heavy: the PBS commands start in about the time of a bare interpreter.
"""

from __future__ import annotations


class BadOption(Exception):
    """An option getopt refuses; the message is glibc's (the command prints its usage after it)."""


def getopt(args: list[str], spec: str, long_flags: tuple[str, ...] = (), permute: bool = True,
           long_values: tuple[str, ...] = ()) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Parse `args` by a getopt `spec` ("fxu:" : -f, -x flags, -u takes a value).

    Returns ([(option, value or None), ...] in order, operands). `long_flags`
    are `--name` flags without values, reported as ("--name", None);
    `long_values` take one (`--name=x` or `--name x`). `permute=False` stops
    at the first operand (POSIX).
    """
    takes_value = {ch: spec[i + 1:i + 2] == ":" for i, ch in enumerate(spec) if ch != ":"}
    options: list[tuple[str, str | None]] = []
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            operands.extend(args[i:])
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name in long_values:
                if not eq:
                    if i >= len(args):
                        raise BadOption(f"option '{name}' requires an argument")
                    value = args[i]
                    i += 1
                options.append((name, value))
                continue
            if name not in long_flags or eq:
                raise BadOption(f"unrecognized option '{arg}'")
            options.append((name, None))
            continue
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            if not permute:
                operands.extend(args[i:])
                break
            continue
        pos = 1
        while pos < len(arg):
            ch = arg[pos]
            pos += 1
            if ch not in takes_value:
                raise BadOption(f"invalid option -- '{ch}'")
            if not takes_value[ch]:
                options.append(("-" + ch, None))
                continue
            if pos < len(arg):
                options.append(("-" + ch, arg[pos:]))
            elif i < len(args):
                options.append(("-" + ch, args[i]))
                i += 1
            else:
                raise BadOption(f"option requires an argument -- '{ch}'")
            break
    return options, operands
