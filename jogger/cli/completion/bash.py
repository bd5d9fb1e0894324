"""The bash completion script: tables generated from the parser (model.py), and one
function that walks the words typed so far to the command they name, skipping options and
their values, then offers what may come next."""

from shlex import quote

from .model import JOB_ID, Command

_FUNCTIONS = r"""
_jog_in() {
    # Whether word $1 is one of the words of $2.
    local w
    for w in $2; do [[ $w == "$1" ]] && return 0; done
    return 1
}

_jog_ids() {
    # The ids of your newest jobs, from the server the words typed name; for 2 s at most
    # (JOGGER_COMPLETION_TIMEOUT), so that a server that does not answer never holds up the
    # shell.
    local -a connect=()
    local i
    for ((i = 1; i < ${#_jog_words[@]} - 1; i++)); do
        case ${_jog_words[i]} in
            -D | --host | --context) connect+=("${_jog_words[i]}" "${_jog_words[i + 1]}") ;;
            --host=* | --context=*) connect+=("${_jog_words[i]}") ;;
        esac
    done
    timeout "${JOGGER_COMPLETION_TIMEOUT:-2}" \
        "${_jog_words[0]}" list --ids --limit 100 "${connect[@]}" 2>/dev/null
}

_jog() {
    # bash splits words at = and : (COMP_WORDBREAKS): glue --isolate=pid and host:port back.
    local -a _jog_words=()
    local i w glued=0
    for ((i = 0; i <= COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        glued=0
        if ((i > 1)) && [[ $w == [=:] || ${COMP_WORDS[i - 1]} == [=:] ]]; then
            _jog_words[${#_jog_words[@]} - 1]+=$w
            glued=1
        else
            _jog_words+=("$w")
        fi
    done
    COMPREPLY=()
    # A value after = or :, which jog has no list of.
    ((glued)) && return 0
    local -i last=${#_jog_words[@]}-1 n=0
    local cur=${_jog_words[last]} path="" word value_of=""
    for ((i = 1; i < last; i++)); do
        word=${_jog_words[i]}
        case $word in
            --)
                # The job's own argv: a command, then its arguments (files).
                if ((i == last - 1)); then
                    COMPREPLY=($(compgen -c -- "$cur"))
                else
                    COMPREPLY=($(compgen -f -- "$cur"))
                fi
                return 0
                ;;
            -*=*) ;;
            -*)
                if _jog_in "$word" "$(_jog_valued "$path")"; then
                    if ((i == last - 1)); then
                        value_of=$word
                    fi
                    ((i += 1))
                fi
                ;;
            *)
                if _jog_in "$word" "$(_jog_subcommands "$path")"; then
                    path+="${path:+ }$word"
                    n=0
                else
                    n+=1
                fi
                ;;
        esac
    done
    if [[ -n $value_of ]]; then
        COMPREPLY=($(compgen -W "$(_jog_choices "$path" "$value_of")" -- "$cur"))
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_jog_options "$path")" -- "$cur"))
    elif [[ -n $(_jog_subcommands "$path") ]]; then
        COMPREPLY=($(compgen -W "$(_jog_subcommands "$path")" -- "$cur"))
    else
        local what
        what=$(_jog_positional "$path" "$n")
        if [[ $what == @ids ]]; then
            COMPREPLY=($(compgen -W "$(_jog_ids)" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$what" -- "$cur"))
        fi
    fi
    return 0
}

complete -F _jog jog
"""


def script(commands: list[Command], version: str) -> str:
    lines = [
        f"# bash completion for jog {version}, made by `jog completion bash`.",
        "# Install: jog completion bash > /etc/bash_completion.d/jog",
        "# (or ~/.local/share/bash-completion/completions/jog); or: source <(jog completion bash)",
        "",
    ]
    lines += _table("_jog_subcommands", {c.path: " ".join(c.subcommands) for c in commands})
    lines += _table(
        "_jog_options", {c.path: " ".join(n for o in c.options for n in o.names) for c in commands}
    )
    lines += _table(
        "_jog_valued",
        {
            c.path: " ".join(n for o in c.options if o.value == "word" for n in o.names)
            for c in commands
        },
    )
    lines += _choices(commands)
    lines += _positionals(commands)
    return "\n".join(lines) + _FUNCTIONS


def _key(path: tuple[str, ...]) -> str:
    return quote(" ".join(path))


def _table(name: str, rows: dict[tuple[str, ...], str]) -> list[str]:
    lines = [f"{name}() {{", "    case $1 in"]
    lines += [
        f"        {_key(path)}) echo {quote(words)} ;;" for path, words in rows.items() if words
    ]
    return [*lines, "    esac", "}", ""]


def _choices(commands: list[Command]) -> list[str]:
    lines = ["_jog_choices() {", '    case "$1 $2" in']
    for c in commands:
        for option in c.options:
            if option.value == "word" and option.choices:
                keys = "|".join(quote(f"{' '.join(c.path)} {name}") for name in option.names)
                lines.append(f"        {keys}) echo {quote(' '.join(option.choices))} ;;")
    return [*lines, "    esac", "}", ""]


def _positionals(commands: list[Command]) -> list[str]:
    """What the Nth positional word ($2, from 0) of each command may be: @ids for job ids,
    else its choices; ``--`` where a job's argv is to come."""
    lines = ["_jog_positional() {", "    case $1 in"]
    for c in commands:
        if c.takes_argv:
            lines.append(f"        {_key(c.path)}) echo -- ;;")
            continue
        tests = []
        for at, positional in enumerate(c.positionals):
            words = "@ids" if positional.name == JOB_ID else " ".join(positional.choices)
            if not words:
                continue
            test = f"(($2 >= {at}))" if positional.repeats else f"(($2 == {at}))"
            tests.append(f"{test} && echo {quote(words)}")
        if tests:
            lines.append(f"        {_key(c.path)}) {'; '.join(tests)} ;;")
    return [*lines, "    esac", "}", ""]
