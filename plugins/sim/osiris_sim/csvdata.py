"""OHLCV CSV in (header variants, bad rows reported by line) and synthetic series out."""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from osiris_contracts.messages import MarketTick

__all__ = ["BadRow", "CsvError", "LoadResult", "load_bars", "make_data", "parse_timestamp"]

# canonical column → accepted header spellings (compared lower-cased, spaces/underscores dropped)
HEADERS: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "datetime", "date", "time", "ts", "gmttime", "localtime",
                  "opentime", "timeutc", "dateutc"),
    "open": ("open", "o", "openprice"),
    "high": ("high", "h", "highprice"),
    "low": ("low", "l", "lowprice"),
    "close": ("close", "c", "closeprice", "last", "price"),
    "volume": ("volume", "v", "vol", "qty", "quantity"),
    "symbol": ("symbol", "ticker", "sym"),
}
REQUIRED = ("timestamp", "open", "high", "low", "close")


class CsvError(ValueError):
    """The file cannot be used at all (missing columns), or a bad row under --strict."""


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass
class LoadResult:
    bars: list[MarketTick] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    skipped_before: int = 0
    """Rows dropped because they are older than --from_date."""


def _norm(h: str) -> str:
    return h.strip().lower().replace(" ", "").replace("_", "").replace("-", "").lstrip("<").rstrip(">")


def map_header(header: list[str]) -> dict[str, int]:
    """Column index per canonical name; raises CsvError naming what is missing."""
    found: dict[str, int] = {}
    normed = [_norm(h) for h in header]
    for canon, names in HEADERS.items():
        for i, h in enumerate(normed):
            if h in names and canon not in found:
                found[canon] = i
                break
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise CsvError(f"missing column(s) {', '.join(missing)} in header {header!r} "
                       f"(accepted e.g. {', '.join(HEADERS[missing[0]][:4])})")
    return found


def parse_timestamp(raw: str) -> datetime:
    """ISO 8601 date or datetime (Z, offsets, space separator) or epoch seconds/milliseconds."""
    s = raw.strip()
    if not s:
        raise ValueError("empty timestamp")
    try:
        num = float(s)
    except ValueError:
        num = None
    if num is not None:
        if num > 1e11:  # milliseconds
            num /= 1000.0
        return datetime.fromtimestamp(num, tz=UTC)
    s = s.replace("Z", "+00:00")
    for fmt in (None, "%Y/%m/%d %H:%M:%S", "%Y/%m/%d", "%m/%d/%Y %H:%M", "%m/%d/%Y"):
        try:
            dt = datetime.fromisoformat(s) if fmt is None else datetime.strptime(s, fmt)
            break
        except ValueError:
            continue
    else:
        raise ValueError(f"unrecognised timestamp {raw!r}")
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _num(row: list[str], idx: int, name: str) -> float:
    try:
        raw = row[idx]
    except IndexError:
        raise ValueError(f"missing {name}") from None
    try:
        v = float(raw.strip().replace(",", ""))
    except ValueError:
        raise ValueError(f"{name} is not a number: {raw!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} is not finite: {raw!r}")
    return v


def iter_rows(path: Path, *, symbol: str = "SIM") -> Iterator[tuple[int, MarketTick | BadRow]]:
    """(line number, bar or BadRow) for every data row of the file."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(4096)
        f.seek(0)
        try:
            dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        reader = csv.reader(f, dialect)
        header: list[str] | None = None
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            if header is None:
                header = row
                cols = map_header(header)
                continue
            line = reader.line_num
            try:
                ts = parse_timestamp(row[cols["timestamp"]]) if cols["timestamp"] < len(row) \
                    else parse_timestamp("")
                o, h, lo, c = (_num(row, cols[k], k) for k in ("open", "high", "low", "close"))
                vol = _num(row, cols["volume"], "volume") if "volume" in cols else 0.0
                if min(o, h, lo, c) <= 0:
                    raise ValueError("prices must be positive")
                if h < max(o, c, lo) or lo > min(o, c, h):
                    raise ValueError(f"high/low inconsistent (o={o} h={h} l={lo} c={c})")
                if vol < 0:
                    raise ValueError("volume is negative")
                sym = row[cols["symbol"]].strip() if "symbol" in cols and cols["symbol"] < len(row) \
                    else symbol
                yield line, MarketTick(timestamp=ts.isoformat(), open=o, high=h, low=lo,
                                       close=c, volume=vol, symbol=sym or symbol)
            except ValueError as e:
                yield line, BadRow(line, str(e))
        if header is None:
            raise CsvError(f"{path}: no header row (expected timestamp, open, high, low, close, volume)")


def load_bars(path: str | Path, *, from_date: date | None = None, strict: bool = False,
              symbol: str = "SIM") -> LoadResult:
    """Read the whole file; bad rows are collected (or raise CsvError under `strict`)."""
    p = Path(path)
    if not p.is_file():
        raise CsvError(f"CSV not found: {p} (make one with 'osiris sim make-data {p}')")
    out = LoadResult()
    for line, item in iter_rows(p, symbol=symbol):
        if isinstance(item, BadRow):
            if strict:
                raise CsvError(f"{p}:{line}: {item.reason}")
            out.bad.append(item)
            continue
        if from_date is not None and datetime.fromisoformat(item.timestamp).date() < from_date:
            out.skipped_before += 1
            continue
        out.bars.append(item)
    return out


def make_data(out: str | Path, *, bars: int, seed: int, start: str = "2023-01-02T14:30:00+00:00",
              price: float = 100.0, interval_s: int = 3600, symbol: str = "SIM") -> Path:
    """Write a synthetic OHLCV CSV: geometric Brownian motion with GARCH(1,1) volatility.

    Quiet and turbulent stretches alternate (volatility clustering); volume rises with
    volatility; high/low bracket open/close. Deterministic for a given seed.
    """
    if bars < 1:
        raise ValueError("bars must be >= 1")
    rng = random.Random(seed)
    dt = interval_s / (252 * 6.5 * 3600)  # fraction of a trading year per bar
    mu = 0.08
    long_var = 0.2 ** 2  # 20 % annualised vol in the long run
    omega, alpha, beta = long_var * 0.05, 0.10, 0.85
    var = long_var
    shock = 0.0
    t = datetime.fromisoformat(start)
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    close = price
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "open", "high", "low", "close", "volume", "symbol"])
        for _ in range(bars):
            var = omega + alpha * shock ** 2 + beta * var
            sigma = math.sqrt(var)
            z = rng.gauss(0.0, 1.0)
            shock = sigma * z
            ret = (mu - 0.5 * var) * dt + sigma * math.sqrt(dt) * z
            open_ = close * math.exp(rng.gauss(0.0, sigma * math.sqrt(dt) * 0.1))
            close = open_ * math.exp(ret)
            wiggle = sigma * math.sqrt(dt)
            high = max(open_, close) * math.exp(abs(rng.gauss(0.0, wiggle * 0.5)))
            low = min(open_, close) * math.exp(-abs(rng.gauss(0.0, wiggle * 0.5)))
            volume = round(1e6 * (sigma / math.sqrt(long_var)) * rng.lognormvariate(0.0, 0.3))
            w.writerow([t.isoformat(), f"{open_:.4f}", f"{high:.4f}", f"{low:.4f}",
                        f"{close:.4f}", volume, symbol])
            t += timedelta(seconds=interval_s)
    return p
