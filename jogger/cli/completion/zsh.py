"""The zsh completion script: one function per command, each an ``_arguments`` spec made
from the parser (model.py); the ids of your jobs come from ``jog list --ids``."""

from .model import JOB_ID, Command, Option, Positional

_IDS = r"""
_jog_ids() {
  # The ids of your newest jobs, from the server the words typed name; for 2 s at most
  # (JOGGER_COMPLETION_TIMEOUT), so that a server that does not answer never holds up the
  # shell.
  local -a ids connect
  local i
  for ((i = 2; i < CURRENT; i++)); do
    case $words[i] in
      (-D|--host|--context) connect+=($words[i] $words[i+1]) ;;
      (--host=*|--context=*) connect+=($words[i]) ;;
    esac
  done
  ids=(${(f)"$(timeout ${JOGGER_COMPLETION_TIMEOUT:-2} \
    $_jog_command list --ids --limit 100 $connect 2>/dev/null)"})
  _describe -t jobs 'job id' ids
}
"""


def script(commands: list[Command], version: str) -> str:
    lines = [
        "#compdef jog",
        f"# zsh completion for jog {version}, made by `jog completion zsh`.",
        "# Install: jog completion zsh > DIR/_jog, DIR a directory in your $fpath (before",
        "# compinit runs in ~/.zshrc); or: source <(jog completion zsh)",
        _IDS,
    ]
    helps = {c.path: c.help for c in commands}
    for command in commands:
        lines += _function(command, helps)
    lines += [
        "_jog() {",
        "  local _jog_command=$words[1]",
        "  _jog_cmd",
        "}",
        "",
        # Autoloaded from $fpath: complete now; sourced: register.
        'if [[ $funcstack[1] == _jog ]]; then _jog "$@"; else compdef _jog jog; fi',
    ]
    return "\n".join(lines) + "\n"


def _name(path: tuple[str, ...]) -> str:
    """The function that completes the command at ``path``: ``_jog_cmd``, ``_jog_cmd_run``."""
    return "_jog_cmd" + "".join(f"_{word}" for word in path)


def _function(command: Command, helps: dict[tuple[str, ...], str]) -> list[str]:
    specs = [_option(o) for o in command.options]
    if command.subcommands:
        specs += ["'1:command:->command'", "'*::argument:->argument'"]
    else:
        specs += [_positional(at, p) for at, p in enumerate(command.positionals)]
        if command.takes_argv:
            specs.append("'*::job command:_normal'")
    lines = [f"{_name(command.path)}() {{"]
    lines += ["  local curcontext=$curcontext state state_descr line ret=1"]
    lines += ["  typeset -A opt_args", "  _arguments -C -s \\"]
    lines += [f"    {spec} \\" for spec in specs]
    lines += ["    && ret=0"]
    if command.subcommands:
        described = " ".join(
            _quote(f"{name}:{helps[(*command.path, name)]}") for name in command.subcommands
        )
        lines += [
            "  case $state in",
            f"    (command) local -a commands=({described})",
            "      _describe -t commands command commands && ret=0 ;;",
            "    (argument)",
            '      curcontext="${curcontext%:*:*}:jog-$words[1]:"',
            f'      _call_function ret "{_name(command.path)}_$words[1]" ;;',
            "  esac",
        ]
    return [*lines, "  return ret", "}", ""]


def _option(option: Option) -> str:
    others = " ".join(option.names)
    exclusive = "*" if option.repeats else f"({others})"
    specs = []
    for name in option.names:
        head = f"{exclusive}{name}"
        if option.value == "joined":
            head += "=-"
        elif option.value == "word" and name.startswith("--"):
            head += "="
        spec = f"{head}[{_help(option.help)}]"
        if option.value == "joined":
            spec += ":: :"
        elif option.value == "word":
            values = f"({' '.join(option.choices)})" if option.choices else " "
            spec += f":{_message(option)}:{values}"
        specs.append(_quote(spec))
    return " \\\n    ".join(specs)


def _message(option: Option) -> str:
    return option.names[-1].lstrip("-").replace(":", "\\:")


def _positional(at: int, positional: Positional) -> str:
    where = "*" if positional.repeats else str(at + 1)
    if positional.name == JOB_ID:
        action = "_jog_ids"
    elif positional.choices:
        action = f"({' '.join(positional.choices)})"
    else:
        action = " "
    return _quote(f"{where}:{positional.name.lower()}:{action}")


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
