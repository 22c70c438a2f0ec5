"""``lq completion bash|zsh``: a completion script generated from the argparse tree itself.

So it never drifts from the real commands. VM, image and node names are completed live by
calling ``lq … list -q`` (silently nothing when the API is unreachable). zsh loads the same
script through ``bashcompinit``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK

# Which live names complete the positional argument of a command path.
DYNAMIC = {
    "vm": "vm list -q",
    "image": "image list -q",
    "node": "node list -q",
}
_NO_DYNAMIC = {"vm create", "vm list", "image list", "image import", "image upload", "node list"}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def walk(parser: argparse.ArgumentParser, path: str = ""
         ) -> Iterator[tuple[str, list[str], list[str]]]:
    """(command path, subcommands, options) for every parser in the tree."""
    subs = _subparsers(parser)
    options = sorted(o for a in parser._actions for o in a.option_strings if o.startswith("--"))
    yield path, sorted(subs), options
    for name, child in subs.items():
        yield from walk(child, f"{path} {name}".strip())


def bash_script(parser: argparse.ArgumentParser) -> str:
    subs_cases, opts_cases, dyn_cases = [], [], []
    for path, subs, options in walk(parser):
        subs_cases.append(f'    "{path}") echo "{" ".join(subs)}" ;;')
        opts_cases.append(f'    "{path}") echo "{" ".join(options)}" ;;')
        group = path.split(" ")[0]
        if not subs and path not in _NO_DYNAMIC and group in DYNAMIC:
            dyn_cases.append(f'    "{path}") lq {DYNAMIC[group]} 2>/dev/null ;;')
    return _BASH.format(subs="\n".join(subs_cases), opts="\n".join(opts_cases),
                        dyn="\n".join(dyn_cases))


_BASH = """\
# lq bash completion: eval "$(lq completion bash)"
_lq_subs() {{
  case "$1" in
{subs}
  esac
}}
_lq_opts() {{
  case "$1" in
{opts}
  esac
}}
_lq_names() {{
  case "$1" in
{dyn}
  esac
}}
_lq_complete() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" path="" w i
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${{COMP_WORDS[i]}}"
    [[ "$w" == -* ]] && continue
    if [[ " $(_lq_subs "$path") " == *" $w "* ]]; then
      path="${{path:+$path }}$w"
    fi
  done
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$(_lq_opts "$path")" -- "$cur"))
    return
  fi
  local subs
  subs="$(_lq_subs "$path")"
  if [[ -n "$subs" ]]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(_lq_names "$path")" -- "$cur"))
  fi
}}
complete -F _lq_complete lq
"""

_ZSH_PREFIX = """\
# lq zsh completion: eval "$(lq completion zsh)" (uses zsh's bash completion support)
autoload -U +X compinit && compinit
autoload -U +X bashcompinit && bashcompinit
"""


def command(ctx: Context) -> int:
    from limiquantix.cli.main import build_parser  # the tree itself; imported late (cycle)

    script = bash_script(build_parser())
    ctx.out.write(_ZSH_PREFIX + script if ctx.args.shell == "zsh" else script)
    return EXIT_OK
