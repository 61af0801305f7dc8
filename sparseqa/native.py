"""Building the native sparse kernels: once, on first use, with this machine's C++ compiler, cached by source hash.

The CMake project in ``sparseqa/kernels`` builds the kernel library (C API, loaded with ctypes) and, when its
``openvino/`` part is present, the OpenVINO extension. The build lands in ``cache_root()/kernels/<key>``, the key
naming the kernel sources, the OpenVINO version and the compiler, so a change to any of them builds anew. Nothing is
built at import time; a failed build is remembered for the rest of the process and reported in one line.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .models import cache_root, publish

KERNEL_SOURCES = Path(__file__).resolve().parent / "kernels"
ISAS = ("avx512vnni", "avxvnni", "avx2", "scalar")
LIBRARY = "libsparseqa_kernels.so"
EXTENSION = "libsparseqa_ov_extension.so"
_MARKER = "sparseqa-kernels.json"


class NativeUnavailable(RuntimeError):
    """The native kernels cannot be used here; the message is a one-line reason (no compiler, build failed, ...)."""


_memo_lock = threading.Lock()
_built: dict[str, Path] = {}
_failed: dict[str, NativeUnavailable] = {}


def kernel_library() -> Path:
    """The kernel shared library (C API), built first if needed. Raises NativeUnavailable."""
    return _build_directory() / LIBRARY


def extension_library() -> Path:
    """The OpenVINO extension from the same build. Raises NativeUnavailable when it cannot be had."""
    path = _build_directory() / EXTENSION
    if not path.is_file():
        raise NativeUnavailable("the OpenVINO extension was not built: sparseqa/kernels/openvino is missing")
    return path


def cpu_isas() -> list[str]:
    """The kernel ISA paths this CPU runs, best first (as the library's own dispatch sees them)."""
    library = ctypes.CDLL(str(kernel_library()))
    library.sq_cpu_isas.restype = ctypes.c_char_p
    return library.sq_cpu_isas().decode().split(",")


def chosen_isa(requested: str | None = None) -> str:
    """The ISA path to run: ``requested``, else ``SPARSEQA_KERNEL_ISA``, else the best this CPU has.

    Raises ValueError (one line) for an unknown name or one this CPU lacks; NativeUnavailable without a build.
    """
    name = (requested or os.environ.get("SPARSEQA_KERNEL_ISA") or "auto").strip().lower()
    if name != "auto" and name not in ISAS:
        raise ValueError(f"unknown kernel ISA {name!r}: choose auto, {', '.join(ISAS)}")
    available = cpu_isas()
    if name == "auto":
        return available[0]
    if name not in available:
        raise ValueError(f"this CPU lacks {name}: it runs {', '.join(available)}")
    return name


def build_key() -> str:
    """What the cached build depends on: every kernel source file, the OpenVINO version and the compiler."""
    digest = hashlib.sha256()
    for path in _source_files():
        digest.update(path.relative_to(KERNEL_SOURCES).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(f"openvino={_openvino_version()}\0compiler={_compiler_identity()}".encode())
    return digest.hexdigest()[:16]


def _source_files() -> list[Path]:
    return sorted(
        path
        for path in KERNEL_SOURCES.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith(".")
    )


def _openvino_version() -> str:
    try:
        import openvino
    except ImportError:
        return "none"
    return openvino.__version__


def _openvino_cmake_dir() -> Path | None:
    try:
        import openvino
    except ImportError:
        return None
    directory = Path(openvino.__file__).resolve().parent / "cmake"
    return directory if directory.is_dir() else None


def _compiler() -> list[str] | None:
    if os.environ.get("CXX"):
        return shlex.split(os.environ["CXX"])
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return [found]
    return None


def _compiler_identity() -> str:
    compiler = _compiler()
    return "none" if compiler is None else _identity_of(tuple(compiler))


@functools.lru_cache(maxsize=None)
def _identity_of(compiler: tuple[str, ...]) -> str:
    try:
        result = subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=30)
    except OSError as error:
        return f"{compiler[0]}: {error}"
    first = (result.stdout or result.stderr).strip().splitlines()
    return f"{compiler[0]}: {first[0] if first else 'exit status ' + str(result.returncode)}"


def _cmake() -> str | None:
    if os.environ.get("CMAKE"):
        return os.environ["CMAKE"]
    try:
        import cmake

        return str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
    except ImportError:
        return shutil.which("cmake")


def _ninja() -> str | None:
    try:
        import ninja

        return str(Path(ninja.BIN_DIR) / "ninja")
    except ImportError:
        return shutil.which("ninja")


def _is_complete(directory: Path) -> bool:
    return (directory / _MARKER).is_file() and (directory / LIBRARY).is_file()


def _build_directory() -> Path:
    key = build_key()
    with _memo_lock:
        if key in _built:
            return _built[key]
        if key in _failed:
            raise _failed[key]
        try:
            _built[key] = _build(key)
        except OSError as error:  # an unwritable or full cache directory
            _failed[key] = NativeUnavailable(f"cannot build the sparse kernels in {cache_root() / 'kernels'}: {error}")
            raise _failed[key] from None
        except NativeUnavailable as error:
            _failed[key] = error
            raise
        return _built[key]


def _build(key: str) -> Path:
    """Configure and build into a staging directory, then publish it as ``kernels/<key>`` in one rename."""
    from filelock import FileLock

    root = cache_root() / "kernels"
    target = root / key
    if _is_complete(target):
        return target
    compiler, cmake = _compiler(), _cmake()
    if compiler is None:
        raise NativeUnavailable("no C++ compiler found: install g++ (or set CXX) to build the sparse kernels")
    if shutil.which(compiler[0]) is None:
        raise NativeUnavailable(f"the C++ compiler {compiler[0]} (CXX) was not found: install it or fix CXX")
    if cmake is None:
        raise NativeUnavailable("cmake not found: pip install cmake (it is in requirements.txt)")
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{key}.lock")):
        if _is_complete(target):  # another process built it while we waited
            return target
        log = root / f"{key}.log"
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        build = Path(tempfile.mkdtemp(prefix=f".{key}-build-", dir=root))
        started = time.perf_counter()
        print("building sparseqa kernels (once) ...", end="", file=sys.stderr, flush=True)
        try:
            _run_cmake(cmake, compiler, build, log)
            for library in build.rglob("*.so"):
                shutil.copy2(library, staging / library.name)
            if not (staging / LIBRARY).is_file():
                raise NativeUnavailable(f"sparse kernel build failed: {LIBRARY} was not produced")
            (staging / _MARKER).write_text(json.dumps({"key": key, "compiler": _compiler_identity()}))
            publish(staging, target, _is_complete)
        except NativeUnavailable:
            print(f" failed (build log: {log})", file=sys.stderr, flush=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(build, ignore_errors=True)
        print(f" done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    return target


def _run_cmake(cmake: str, compiler: list[str], build: Path, log: Path) -> None:
    configure = [cmake, "-S", str(KERNEL_SOURCES), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
    configure.append(f"-DCMAKE_CXX_COMPILER={compiler[0]}")
    if len(compiler) > 1:
        configure.append(f"-DCMAKE_CXX_COMPILER_ARG1={' '.join(compiler[1:])}")
    ninja = _ninja()
    if ninja:
        configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    openvino_dir = _openvino_cmake_dir()
    if openvino_dir:
        configure.append(f"-DOpenVINO_DIR={openvino_dir}")
    steps = [configure, [cmake, "--build", str(build), "--parallel", str(os.cpu_count() or 1)]]
    with open(log, "w") as output:
        for command in steps:
            output.write("$ " + shlex.join(command) + "\n")
            output.flush()
            try:
                result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, text=True)
            except OSError as error:
                raise NativeUnavailable(f"sparse kernel build failed: cannot run {command[0]}: {error}") from None
            if result.returncode != 0:
                raise NativeUnavailable(f"sparse kernel build failed: {_first_error(log)}")


def _first_error(log: Path) -> str:
    """The first error a build log names, as one sentence without file locations (the reason may reach a public
    page): for CMake, the message it writes below "CMake Error at FILE:LINE (message):", up to its first full stop."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    for index, line in enumerate(lines):
        if "error" in line.lower() and not line.startswith("$ "):
            if line.startswith("CMake Error") and line.endswith(":"):
                message = []
                for text in (text for text in lines[index + 1 : index + 8] if text):
                    message.append(text)
                    if text.endswith("."):
                        break
                return "CMake: " + " ".join(message)
            return line
    return "see the build log"
