"""The processor a benchmark ran on, named closely enough to tell this project's machines apart.

``/proc/cpuinfo``'s model name alone ("AMD EPYC") does not: two processors of that name ran
XLA's CPU kernel gradients 3x apart, and slices of them helped on one and hurt on the other
(BENCHMARKS.md, 2026-12-02), so every benchmark header names the family, the model and
whether the processor has AVX-512.
"""

from __future__ import annotations

import platform

__all__ = ["processor"]


def processor(cpuinfo: str = "/proc/cpuinfo") -> str:
    """``"AMD EPYC (family 25, model 17, AVX-512)"``: the first processor's model name, family,
    model and AVX-512 flag; the model name alone where the file has no family (another
    architecture), ``platform.processor()`` where there is no file."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, sep, value = line.partition(":")
                if not sep and fields:
                    break  # the blank line after the first processor's block
                if sep:
                    fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        avx512 = "AVX-512" if "avx512f" in fields.get("flags", "").split() else "no AVX-512"
        name += f" (family {fields['cpu family']}, model {fields['model']}, {avx512})"
    return name
