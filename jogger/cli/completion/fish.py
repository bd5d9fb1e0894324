"""The fish completion script: ``complete`` lines made from the parser (model.py), each for
the command the words typed name (``__jog_at PATH``); the ids of your jobs come from
``jog list --ids``."""

from .model import JOB_ID, Command

_FUNCTIONS = r"""
function __jog_walk --description 'jog: the command the words typed name, or -- past --'
    set -l tokens (commandline -opc)
    set -l path
    set -l skip 0
    for token in $tokens[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        switch $token
            case --
                echo --
                return
            case '-*=*'
            case '-*'
                if contains -- $token (__jog_valued "$path")
                    set skip 1
                end
            case '*'
                if contains -- $token (__jog_subcommands "$path")
                    set -a path $token
                end
        end
    end
    echo "$path"
end

function __jog_at --description 'jog: whether the words typed name this command'
    set -l at (__jog_walk)
    test "$at" = "$argv[1]"
end

function __jog_ids --description 'jog: the ids of your newest jobs, for 2 s at most'
    # At most 2 s (JOGGER_COMPLETION_TIMEOUT): a server that does not answer never holds up
    # the shell.
    set -l limit 2
    set -q JOGGER_COMPLETION_TIMEOUT; and set limit $JOGGER_COMPLETION_TIMEOUT
    set -l tokens (commandline -opc)
    set -l connect
    for i in (seq 2 (count $tokens))
        switch $tokens[$i]
            case -D --host --context
                set -a connect $tokens[$i] $tokens[(math $i + 1)]
            case '--host=*' '--context=*'
                set -a connect $tokens[$i]
        end
    end
    timeout $limit $tokens[1] list --ids --limit 100 $connect 2>/dev/null
end

complete -c jog -f
complete -c jog -n '__jog_at --' -F
"""


def script(commands: list[Command], version: str) -> str:
    lines = [
        f"# fish completion for jog {version}, made by `jog completion fish`.",
        "# Install: jog completion fish > ~/.config/fish/completions/jog.fish",
        "",
    ]
    lines += _table("__jog_subcommands", {c.path: c.subcommands for c in commands})
    lines += _table(
        "__jog_valued",
        {
            c.path: tuple(n for o in c.options if o.value == "word" for n in o.names)
            for c in commands
        },
    )
    lines.append(_FUNCTIONS)
    helps = {c.path: c.help for c in commands}
    for c in commands:
        at = f"-n {_quote('__jog_at ' + _quote(' '.join(c.path)))}"
        for name in c.subcommands:
            lines.append(
                f"complete -c jog {at} -a {_quote(name)} -d {_quote(helps[(*c.path, name)])}"
            )
        for option in c.options:
            words = [f"complete -c jog {at}"]
            for name in option.names:
                words.append(f"-l {name[2:]}" if name.startswith("--") else f"-s {name[1:]}")
            if option.value == "word":
                words.append(
                    f"-x -a {_quote(' '.join(option.choices))}" if option.choices else "-r"
                )
            if option.help:
                words.append(f"-d {_quote(option.help)}")
            lines.append(" ".join(words))
        for positional in c.positionals:
            if positional.name == JOB_ID:
                lines.append(f"complete -c jog {at} -a '(__jog_ids)'")
            elif positional.choices:
                lines.append(f"complete -c jog {at} -a {_quote(' '.join(positional.choices))}")
    return "\n".join(lines) + "\n"


def _table(name: str, rows: dict[tuple[str, ...], tuple[str, ...]]) -> list[str]:
    lines = [f"function {name}", "    switch $argv[1]"]
    for path, words in rows.items():
        if words:
            lines += [f"        case {_quote(' '.join(path))}"]
            lines += [f"            printf '%s\\n' {' '.join(_quote(w) for w in words)}"]
    return [*lines, "    end", "end", ""]


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
