"""The severity gate: one verdict on a Trivy JSON report, used by `dagger call scan`,
scripts/scan.sh and the tests alike.

Rules, in order, for every finding (vulnerability, misconfiguration, secret, license):
1. a severity outside the threshold (`--severity`, e.g. "HIGH,CRITICAL") does not count;
2. with `ignore_unfixed`, a vulnerability with no fixed version does not count;
3. a finding matched by an ignore entry that has not expired does not count. Entries live in
   `.trivyignore.yaml` (Trivy's own schema: sections `vulnerabilities`, `misconfigurations`,
   `secrets`, `licenses`; each entry `id`, optional `paths`, and - required by this project -
   `statement` (the reason) and `expired_at` (a date)). An entry applies through its expiry date
   and no longer from the next day on; an entry without a reason or expiry is rejected.
Whatever is left fails the gate. Trivy runs with `--exit-code 0`; this module decides.
Pure Python, no dagger import.
"""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import fnmatch
import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Trivy's severities, least to most severe.
SEVERITIES: tuple[str, ...] = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
DEFAULT_SEVERITIES = "HIGH,CRITICAL"

# Report key in Results[] -> ignore-file section, and the fields naming a finding's id.
_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Vulnerabilities": ("vulnerabilities", ("VulnerabilityID",)),
    "Misconfigurations": ("misconfigurations", ("ID", "AVDID")),
    "Secrets": ("secrets", ("RuleID",)),
    "Licenses": ("licenses", ("Name",)),
}
IGNORE_SECTIONS: tuple[str, ...] = tuple(section for section, _ in _KINDS.values())
# A finding's kind in the report's lines: "HIGH vulnerability CVE-…".
_SINGULAR = {
    "vulnerabilities": "vulnerability",
    "misconfigurations": "misconfiguration",
    "secrets": "secret",
    "licenses": "license",
}


class GateInputError(ValueError):
    """A report, threshold or ignore file the gate cannot judge; the message names the value."""


@dataclass(frozen=True)
class Finding:
    kind: str  # the ignore-file section: vulnerabilities, misconfigurations, ...
    ids: tuple[str, ...]  # first is the display id; others are aliases (AVD-DS-0002)
    severity: str
    target: str  # Trivy's Target: a file, or a package class like "Python"
    title: str
    paths: tuple[str, ...]  # what ignore `paths` globs are matched against
    unfixed: bool = False  # only a vulnerability can be unfixed

    @property
    def id(self) -> str:
        return self.ids[0]

    def describe(self) -> str:
        where = self.paths[-1]  # the most specific: FilePath/PkgPath when Trivy gives one
        return f"{self.severity} {_SINGULAR[self.kind]} {self.id} in {where}: {self.title}"


@dataclass(frozen=True)
class IgnoreEntry:
    kind: str
    id: str
    statement: str
    expired_at: dt.date
    paths: tuple[str, ...] = ()

    def matches(self, finding: Finding) -> bool:
        if finding.kind != self.kind or self.id not in finding.ids:
            return False
        if not self.paths:
            return True
        return any(fnmatch.fnmatch(p, glob) for p in finding.paths for glob in self.paths)

    def expired(self, today: dt.date) -> bool:
        return today > self.expired_at


@dataclass
class Verdict:
    severities: frozenset[str]
    failing: list[Finding] = field(default_factory=list)
    ignored: list[tuple[Finding, IgnoreEntry]] = field(default_factory=list)
    expired: list[tuple[Finding, IgnoreEntry]] = field(default_factory=list)
    unused: list[IgnoreEntry] = field(default_factory=list)
    below_threshold: int = 0
    unfixed_skipped: int = 0
    artifact: str = ""

    @property
    def passed(self) -> bool:
        return not self.failing

    def counts(self) -> dict[str, int]:
        """Failing findings per severity, most severe first."""
        by_severity = Counter(f.severity for f in self.failing)
        return {s: by_severity[s] for s in reversed(SEVERITIES) if by_severity[s]}

    def report(self) -> str:
        """A short human report: the verdict line, then what failed, was ignored or skipped."""
        threshold = ",".join(s for s in SEVERITIES if s in self.severities)
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items()) or "none"
        head = "PASS" if self.passed else "FAIL"
        lines = [f"trivy gate {head}: {self.artifact or 'report'} at {threshold}: {counts}"]
        worst_first = sorted(self.failing, key=lambda f: -SEVERITIES.index(f.severity))
        lines += [f"  fail    {f.describe()}" for f in worst_first]
        lines += [
            f"  EXPIRED ignore {e.id} (expired {e.expired_at}) no longer hides {f.describe()}"
            for f, e in self.expired
        ]
        lines += [
            f"  ignored {f.describe()} until {e.expired_at}: {e.statement}" for f, e in self.ignored
        ]
        if self.unused:  # stale entries: delete them (or they matched only lower severities)
            lines.append(
                "  unused ignore entries: " + ", ".join(f"{e.kind}/{e.id}" for e in self.unused)
            )
        lines.append(
            f"  skipped {self.below_threshold} below threshold, "
            f"{self.unfixed_skipped} unfixed (ignore-unfixed)"
        )
        return "\n".join(lines)


def parse_severities(text: str) -> frozenset[str]:
    """A comma list like Trivy's `--severity` ("HIGH,CRITICAL"), case-insensitive."""
    names = [s.strip().upper() for s in text.split(",") if s.strip()]
    bad = ", ".join(repr(n) for n in names if n not in SEVERITIES)
    if bad or not names:
        raise GateInputError(
            f"bad severity {bad or '(none)'} in threshold {text!r}: "
            f"use a comma list of {','.join(SEVERITIES)}"
        )
    return frozenset(names)


class Severity(enum.Enum):
    """The lowest severity that fails the gate; every higher one fails it too."""

    UNKNOWN = "UNKNOWN"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


def severities_at_least(minimum: Severity | str) -> frozenset[str]:
    """`minimum` and every severity above it: severities_at_least("HIGH") = HIGH,CRITICAL."""
    name = minimum.value if isinstance(minimum, Severity) else minimum.strip().upper()
    if name not in SEVERITIES:
        raise GateInputError(f"bad minimum severity {minimum!r}: use one of {SEVERITIES}")
    return frozenset(SEVERITIES[SEVERITIES.index(name) :])


def _parse_date(value: object, where: str) -> dt.date:
    # PyYAML turns an unquoted 2027-01-31 into a date; a quoted one stays a string.
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise GateInputError(f"{where}: expired_at {value!r} is not a date (YYYY-MM-DD)") from None


def parse_ignore_entries(data: object, source: str = ".trivyignore.yaml") -> list[IgnoreEntry]:
    """Validate the parsed ignore file; every entry needs an id, a statement and expired_at."""
    if data is None:
        return []
    if not isinstance(data, Mapping):
        raise GateInputError(f"{source}: expected a mapping of {', '.join(IGNORE_SECTIONS)}")
    unknown = sorted(set(map(str, data)) - set(IGNORE_SECTIONS))
    if unknown:
        raise GateInputError(f"{source}: unknown section(s) {unknown}; use {IGNORE_SECTIONS}")
    entries: list[IgnoreEntry] = []
    for section in IGNORE_SECTIONS:
        items = data.get(section) or []
        if not isinstance(items, list):
            raise GateInputError(f"{source}: section {section!r} must be a list of entries")
        for n, item in enumerate(items):
            entries.append(_parse_entry(section, item, f"{source}: {section}[{n}]"))
    return entries


def _parse_entry(section: str, item: object, where: str) -> IgnoreEntry:
    if not isinstance(item, Mapping) or not str(item.get("id") or "").strip():
        raise GateInputError(f"{where}: every entry needs an 'id'")
    ident = str(item["id"]).strip()
    where = f"{where} ({ident})"
    statement = str(item.get("statement") or "").strip()
    if not statement:
        raise GateInputError(f"{where}: missing 'statement' (why it is acceptable)")
    if item.get("expired_at") in (None, ""):
        raise GateInputError(f"{where}: missing 'expired_at' (a date to re-check it by)")
    paths = item.get("paths") or []
    if not isinstance(paths, list):
        raise GateInputError(f"{where}: 'paths' must be a list of globs, got {paths!r}")
    return IgnoreEntry(
        kind=section,
        id=ident,
        statement=statement,
        expired_at=_parse_date(item["expired_at"], where),
        paths=tuple(str(p) for p in paths),
    )


def load_ignore_file(path: str | Path) -> list[IgnoreEntry]:
    """Read and validate an ignore file (a missing file is an error: it was asked for)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GateInputError(f"ignore file {str(p)!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise GateInputError(f"ignore file {str(p)!r} is not valid YAML: {exc}") from None
    return parse_ignore_entries(data, source=str(p))


def findings(report: Mapping[str, Any]) -> list[Finding]:
    """Every finding in a Trivy JSON report (SchemaVersion 2); passed misconfig checks excluded."""
    if not isinstance(report, Mapping) or report.get("SchemaVersion") != 2:
        raise GateInputError(
            "not a Trivy JSON report: expected SchemaVersion 2, got "
            f"{report.get('SchemaVersion') if isinstance(report, Mapping) else type(report)!r}"
        )
    found: list[Finding] = []
    for result in report.get("Results") or []:
        target = str(result.get("Target", ""))
        for key, (kind, id_fields) in _KINDS.items():
            for item in result.get(key) or []:
                if kind == "misconfigurations" and item.get("Status", "FAIL") != "FAIL":
                    continue
                found.append(_finding(kind, id_fields, item, target))
    return found


def _finding(kind: str, id_fields: Sequence[str], item: Mapping[str, Any], target: str) -> Finding:
    ids = tuple(str(item[f]) for f in id_fields if item.get(f))
    if not ids:
        raise GateInputError(f"{kind} finding in {target!r} has none of {list(id_fields)}")
    severity = str(item.get("Severity") or "UNKNOWN").upper()
    if severity not in SEVERITIES:
        raise GateInputError(f"{kind} {ids[0]} in {target!r} has unknown severity {severity!r}")
    paths = tuple(p for p in (target, item.get("PkgPath"), item.get("FilePath")) if p)
    title = str(item.get("Title") or item.get("PkgName") or item.get("Category") or "")
    if kind == "vulnerabilities":
        title = f"{item.get('PkgName')} {item.get('InstalledVersion')}: {title}".strip()
    unfixed = kind == "vulnerabilities" and not (
        item.get("FixedVersion") or item.get("Status") == "fixed"
    )
    return Finding(kind, ids, severity, target, title, paths, unfixed)


def evaluate(
    report: Mapping[str, Any],
    *,
    severities: Iterable[str] | str = DEFAULT_SEVERITIES,
    ignore_unfixed: bool = False,
    ignores: Sequence[IgnoreEntry] = (),
    today: dt.date | None = None,
    artifact: str | None = None,
) -> Verdict:
    """Judge a Trivy report. `today` decides which ignore entries have expired; `artifact`
    names what was scanned in the report (default: the report's ArtifactName)."""
    wanted = parse_severities(severities) if isinstance(severities, str) else frozenset(severities)
    if not wanted or not wanted <= set(SEVERITIES):
        raise GateInputError(f"bad severity threshold {sorted(wanted)!r}")
    day = today or dt.date.today()
    name = artifact if artifact is not None else str(report.get("ArtifactName", ""))
    verdict = Verdict(severities=wanted, artifact=name)
    used: set[IgnoreEntry] = set()
    for finding in findings(report):
        matching = [e for e in ignores if e.matches(finding)]
        used.update(matching)
        if finding.severity not in wanted:
            verdict.below_threshold += 1
            continue
        if ignore_unfixed and finding.unfixed:
            verdict.unfixed_skipped += 1
            continue
        live = [e for e in matching if not e.expired(day)]
        if live:
            verdict.ignored.append((finding, live[0]))
            continue
        verdict.failing.append(finding)
        verdict.expired += [(finding, e) for e in matching]
    verdict.unused = [e for e in ignores if e not in used]
    return verdict


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: `python -m onnx_serving.gate REPORT.json [...]`; exit 0 pass, 1 fail, 2 bad input."""
    parser = argparse.ArgumentParser(prog="gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="Trivy JSON report (trivy ... --format json)")
    parser.add_argument("--severity", default=DEFAULT_SEVERITIES, help="comma list that fails")
    parser.add_argument("--ignore-unfixed", action="store_true", help="skip unfixed vulns")
    parser.add_argument("--ignorefile", help="ignore file (.trivyignore.yaml schema)")
    parser.add_argument("--today", help="date for ignore expiry (YYYY-MM-DD; default today)")
    args = parser.parse_args(argv)
    try:
        report = json.loads(Path(args.report).read_text(encoding="utf-8"))
        verdict = evaluate(
            report,
            severities=args.severity,
            ignore_unfixed=args.ignore_unfixed,
            ignores=load_ignore_file(args.ignorefile) if args.ignorefile else (),
            today=_parse_date(args.today, "--today") if args.today else None,
        )
    except (GateInputError, OSError, json.JSONDecodeError) as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return 2
    print(verdict.report())
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
