"""``python -m mdnet_utils zh [build|student|sync|check] [NN ...]``: the Chinese edition's command.

* ``build`` (the default; ``make zh``): the Chinese notebooks into ``build/zh`` (``translation.build_zh``);
* ``student`` (``make student-zh``): the Chinese student edition into ``student-zh`` (``student``, ``lang="zh"``);
* ``sync NN``: write or refresh ``notebooks/zh/NN_slug.yml`` after an English edit (``sync_translation``);
* ``check [NN]``: every cell that is missing, stale, orphaned or unfaithful (``translation_problems``); a
  ``ValueError`` (exit status 2) when there is any.

``NN`` picks notebooks by the start of their name ("00", "03_cam"); none means every notebook.
"""
from __future__ import annotations

from mdnet_utils.course.notebook import notebook_paths
from mdnet_utils.course.student import build_student_edition
from mdnet_utils.course.translation import build_zh, first_line, sync_translation, translation_problems, word_diff

ACTIONS = ("build", "student", "sync", "check")


def _chosen(prefixes: list[str]):
    paths = notebook_paths()
    chosen = [p for p in paths if not prefixes or any(p.name.startswith(n) for n in prefixes)]
    unknown = [n for n in prefixes if not any(p.name.startswith(n) for p in paths)]
    if unknown:
        raise ValueError(f"zh: no notebook's name starts with {unknown[0]!r} (the notebooks are "
                         f"{', '.join(p.name[:2] for p in paths)}).")
    return chosen


def zh_command(what: list[str], *, out: str | None = None, force: bool = False) -> None:
    """Run one action of the ``zh`` command (see the module's docstring) and print what it did."""
    action = what[0] if what and what[0] in ACTIONS else "build"
    paths = _chosen(what[1:] if what and what[0] in ACTIONS else what)
    if action == "sync":
        for path in paths:
            r = sync_translation(path)
            print(f"{path.stem}: {len(r['new'])} cells to translate, {len(r['carried'])} changed since translated "
                  f"(see their old_en), {len(r['orphans'])} orphans kept, {len(r['dropped'])} empty entries of "
                  f"vanished cells removed")
            for kind in ("new", "carried", "orphans"):
                for e in r[kind]:
                    print(f"  {kind:8s} cell {e.get('cell', '?')}: {first_line(e['en'])}")
                    if kind == "carried":
                        print(f"           what changed: {word_diff(e['old_en'], e['en'])}")
    elif action == "check":
        problems = [p for path in paths for p in translation_problems(path)]
        some = f"{len(paths)} notebook{'s' * (len(paths) != 1)}"
        print("\n".join(problems) if problems else f"{some}: every markdown cell translated, current and faithful")
        if problems:
            raise ValueError(f"zh check: {len(problems)} problem{'s' * (len(problems) != 1)} in the Chinese edition "
                             "(listed above).")
    elif action == "student":
        done = build_student_edition(out or "student-zh", paths, force=force, lang="zh")
        print(f"{done}: {len(paths)} notebooks, the Chinese student edition (the checks' messages stay English)")
    else:
        done, left = build_zh(out or "build/zh", paths, force=force)
        for name, cells in left.items():
            if cells:
                print(f"{name}: {len(cells)} markdown cells not translated yet, left in English "
                      f"(python -m mdnet_utils zh check {name[:2]})")
        print(f"{done}: {len(left)} notebooks, {sum(map(len, left.values()))} markdown cells still in English")
