"""Every public function, class, method and property of nmnp has a docstring, and every
cross-reference in a docstring (``:func:`...```, ``:meth:`...```...) names something that
exists: a rename or a module split cannot leave a reader following a dead name."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types
from pathlib import Path

import pytest

import nmnp

#: Sphinx roles as the docstrings use them: :func:`name`, :class:`~nmnp.x.Y`, :meth:`f()`.
_REFERENCE = re.compile(r":(func|class|meth|mod|data|attr|exc|obj):`~?([A-Za-z_][\w.]*)(?:\(\))?`")

#: Third-party packages some modules may need that an install can lack.
_OPTIONAL = ("numba_cuda", "numba.cuda", "torch")


def package_modules() -> list[types.ModuleType]:
    """Every module of nmnp, except ``__main__`` ones (importing those runs them)."""
    modules = [nmnp]
    for info in pkgutil.walk_packages(nmnp.__path__, "nmnp."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except ModuleNotFoundError as err:
            if not (err.name or "").startswith(_OPTIONAL):
                raise
    return modules


def _own(module: types.ModuleType):
    """(name, object) of the public functions and classes defined in ``module``."""
    for name, obj in vars(module).items():
        if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)) \
                and obj.__module__ == module.__name__:
            yield name, obj


def _has_doc(cls: type, name: str) -> bool:
    """Whether attribute ``name`` of ``cls`` has a docstring, its own or a base class's."""
    for klass in cls.__mro__:
        member = vars(klass).get(name)
        if member is None:
            continue
        member = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
        if getattr(member, "__doc__", None):
            return True
    return False


def undocumented(module: types.ModuleType) -> list[str]:
    """Public names of ``module`` without a docstring: the module itself, its functions and
    classes, and their public methods and properties (an inherited docstring counts)."""
    missing = [] if module.__doc__ else [module.__name__]
    for name, obj in _own(module):
        if not obj.__doc__:
            missing.append(f"{module.__name__}.{name}")
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, (property, staticmethod, classmethod)) or inspect.isfunction(member):
                    if not _has_doc(obj, attr):
                        missing.append(f"{module.__name__}.{name}.{attr}")
    return missing


def _member(obj, name: str):
    """``getattr(obj, name)``, also for a class's annotated fields without a class-level
    value (a dataclass field with no default); AttributeError when there is no such name."""
    try:
        return getattr(obj, name)
    except AttributeError:
        if inspect.isclass(obj) and any(name in vars(k).get("__annotations__", {}) for k in obj.__mro__):
            return None
        raise


def _resolves(name: str, module: types.ModuleType) -> bool:
    """Whether a reference resolves as Sphinx would look it up: a dotted path from an
    importable module, a name of ``module``, or a member of one of ``module``'s classes."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):  # the longest importable prefix
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for part in parts[split:]:
                obj = _member(obj, part)
        except AttributeError:
            break
        return True
    obj = module
    try:
        for part in parts:
            obj = _member(obj, part)
        return True
    except AttributeError:
        pass
    if len(parts) == 1:  # :meth:`step` inside a class: a member of a class of this module
        for _, cls in _own(module):
            if inspect.isclass(cls):
                try:
                    _member(cls, parts[0])
                    return True
                except AttributeError:
                    pass
    return False


def dead_references(source: str, module: types.ModuleType) -> list[str]:
    """The cross-references in ``source`` (a module's text) that name nothing, with lines."""
    dead = []
    for match in _REFERENCE.finditer(source):
        role, name = match.groups()
        if not _resolves(name, module):
            line = source.count("\n", 0, match.start()) + 1
            dead.append(f"{module.__name__}:{line}: :{role}:`{name}`")
    return dead


MODULES = package_modules()


def test_every_public_name_has_a_docstring():
    missing = [name for module in MODULES for name in undocumented(module)]
    assert missing == [], f"{len(missing)} public names without a docstring: {missing}"


def test_every_cross_reference_names_something_that_exists():
    dead = [ref for module in MODULES for ref in dead_references(inspect.getsource(module), module)]
    assert dead == [], f"{len(dead)} dead cross-references: {dead}"


def test_the_walk_finds_every_subpackage():
    names = {module.__name__ for module in MODULES}
    assert {"nmnp.kernels.cpu", "nmnp.continual.metrics", "nmnp.bench.roofline",
            "nmnp.strategies.supsup", "nmnp.data.idx"} <= names
    assert not any(name.endswith("__main__") for name in names)


def test_the_checks_catch_a_missing_docstring_and_a_dead_reference():
    fake = types.ModuleType("fake", "A module.")

    class Documented:
        """A class."""

        count: int

        def run(self):
            """Runs."""

        @property
        def size(self):
            """A size."""

    class Bare(Documented):
        def run(self):  # inherits Documented.run's docstring: fine
            pass

        def stop(self):
            pass

        @property
        def size(self):
            return 1

    def helper():
        pass

    for obj in (Documented, Bare, helper):
        obj.__module__ = "fake"
        setattr(fake, obj.__name__, obj)
    assert undocumented(fake) == ["fake.Bare", "fake.Bare.stop", "fake.helper"]

    text = ("See :func:`nmnp.kernels.cpu.task_logits`, :class:`~nmnp.model.ModulatedNetwork`, "
            ":meth:`run`, :meth:`Documented.size`, :attr:`Documented.count` and :func:`helper()`;\n"
            "not :func:`nmnp.kernels.cpu.no_such_kernel`, :mod:`nmnp.nowhere` or :meth:`fly`.")
    assert dead_references(text, fake) == [
        "fake:2: :func:`nmnp.kernels.cpu.no_such_kernel`",
        "fake:2: :mod:`nmnp.nowhere`",
        "fake:2: :meth:`fly`",
    ]


#: Modules whose docstrings hold ``>>>`` examples (found by the test below).
DOCTESTED = ("nmnp.checkpoint", "nmnp.model", "nmnp.presets", "nmnp.progress", "nmnp.train")


def test_every_module_with_examples_is_doctested():
    root = Path(nmnp.__file__).parent
    with_examples = {
        "nmnp." + path.relative_to(root).with_suffix("").as_posix().replace("/", ".")
        for path in root.rglob("*.py") if ">>> " in path.read_text(encoding="utf-8")
    }
    assert with_examples == set(DOCTESTED)


@pytest.mark.parametrize("name", DOCTESTED)
def test_the_docstring_examples_run_as_written(name, tmp_path, monkeypatch):
    import doctest

    monkeypatch.chdir(tmp_path)  # examples may write files (checkpoint: fly.nmnp)
    failed, attempted = doctest.testmod(importlib.import_module(name), verbose=False,
                                        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert attempted > 0 and failed == 0
