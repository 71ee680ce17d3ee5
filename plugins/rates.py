"""Exchange rates: three providers in three formats merged into one clean answer.

The seed's example.  ``rates.refresh`` (run by the scheduler) fetches EUR
reference rates concurrently from three named outgoing HTTP connections —
``ECB`` (the ECB's daily XML), ``ECB-SDMX`` (the ECB data API's SDMX-CSV)
and ``Frankfurter`` (JSON) — tolerates any of them failing, merges them
into one entry per currency and keeps the result in the cache; each rate
that changed is published to topic ``rates.EUR.<CUR>`` (and to the AMQP
outgoing ``rates`` when one is configured).  ``rates.get`` answers from
the cache and fetches on a miss.  No address appears here: the connections
are configuration (``etc/examples/rates.yaml`` offline, ``rates-online.yaml``).

Merging, per currency: a rate fetched now beats one kept from an earlier
refresh of a provider that failed this time; then the newest ``as_of``;
then the provider order below.  A kept rate is ``is_stale``.  ``rates.get``
refreshes when the cached snapshot is missing or older than ``max_age``
seconds (so it also works without the scheduler).
"""

import math
import re
import time
import weakref

from twisted.internet import defer
from twisted.python.failure import Failure

from broker import Bool, Float, Int, List, Service
from broker.errors import NotFound, ServiceUnavailable, ValidationError
from broker.runtime import NoSuchConnection

BASE = "EUR"
# Cache keys: "rates:EUR" → {"base", "refreshed_at", "currencies": [...]}; "rates:EUR:<CUR>" →
# that currency's entry; "rates:EUR:state" → {"providers": what each said last, "rates": merged}
# (read by refreshes only).  rates.get reads the first and the currencies asked for, in one call.
CACHE_KEY = "rates:EUR"
STATE_KEY = "rates:EUR:state"
CACHE_TTL = 86400               # a snapshot nobody refreshes for a day is dropped
AMQP_OUTGOING = "rates"         # publish changes here too when it is configured
MAX_CURRENCIES = 300            # in one rates.get: more than there are (ISO 4217 has about 180)

_ECB_NS = "{http://www.ecb.int/vocabulary/2002-08-01/eurofxref}"
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SDMX_COLUMNS = ("CURRENCY", "CURRENCY_DENOM", "TIME_PERIOD", "OBS_VALUE")

#: Injectable for tests: seconds since the epoch.
clock = time.time


class ProviderError(ValueError):
    """A provider's payload is malformed; the message says what and where."""


# -- parsers: parsed payload → {currency: {"rate": float, "as_of": "YYYY-MM-DD"}} ---------------


def _rate(text, where):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ProviderError(f"{where}: rate {text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ProviderError(f"{where}: rate {text!r} is not a positive number")
    return value


def _currency(code, where):
    if not isinstance(code, str) or not _CURRENCY.match(code):
        raise ProviderError(f"{where}: {code!r} is not a currency code")
    return code


def _date(text, where):
    if not isinstance(text, str) or not _DATE.match(text):
        raise ProviderError(f"{where}: {text!r} is not a date (YYYY-MM-DD)")
    return text


def parse_ecb_daily(root):
    """The ECB's ``eurofxref-daily.xml`` (an lxml root from the hardened parser)."""
    if root is None or not hasattr(root, "iter"):
        raise ProviderError("expected an XML document")
    day = next((c for c in root.iter(f"{_ECB_NS}Cube") if c.get("time") is not None), None)
    if day is None:
        raise ProviderError("no <Cube time=...> element (is this eurofxref-daily.xml?)")
    as_of = _date(day.get("time"), "Cube time")
    rates = {}
    for cube in day.iter(f"{_ECB_NS}Cube"):
        if cube is day:
            continue
        code = _currency(cube.get("currency"), "Cube currency")
        rates[code] = {"rate": _rate(cube.get("rate"), f"Cube {code}"), "as_of": as_of}
    if not rates:
        raise ProviderError(f"no rates in the Cube of {as_of}")
    return rates


def parse_frankfurter(data):
    """Frankfurter's ``/latest?from=EUR``: ``{"amount", "base", "date", "rates": {CUR: n}}``."""
    if not isinstance(data, dict):
        raise ProviderError("expected a JSON object")
    if data.get("base") != BASE:
        raise ProviderError(f"base is {data.get('base')!r}, expected {BASE!r}")
    as_of = _date(data.get("date"), "date")
    amount = data.get("amount", 1)
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not amount > 0:
        raise ProviderError(f"amount {amount!r} is not a positive number")
    found = data.get("rates")
    if not isinstance(found, dict) or not found:
        raise ProviderError("rates is missing or empty")
    rates = {}
    for code, value in found.items():
        _currency(code, "rates")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProviderError(f"rates.{code}: {value!r} is not a number")
        rates[code] = {"rate": _rate(value, f"rates.{code}") / amount, "as_of": as_of}
    return rates


def parse_sdmx_csv(rows):
    """The ECB data API's SDMX-CSV (``format=csvdata``) as rows of dicts.

    A row without an observation (empty or ``NaN``) is skipped; with several
    observations of one currency the latest wins.
    """
    if not isinstance(rows, list):
        raise ProviderError("expected CSV rows")
    if not rows:
        raise ProviderError("no data rows")
    missing = [c for c in _SDMX_COLUMNS if c not in rows[0]]
    if missing:
        raise ProviderError(f"missing column(s) {', '.join(missing)} (is this SDMX-CSV?)")
    rates = {}
    for line, row in enumerate(rows, start=2):
        value = row["OBS_VALUE"].strip()
        if not value or value.lower() == "nan":
            continue
        code = _currency(row["CURRENCY"], f"line {line}")
        if row["CURRENCY_DENOM"] != BASE:
            raise ProviderError(f"line {line}: CURRENCY_DENOM is {row['CURRENCY_DENOM']!r}, "
                                f"expected {BASE!r}")
        as_of = _date(row["TIME_PERIOD"], f"line {line} TIME_PERIOD")
        if code not in rates or as_of > rates[code]["as_of"]:
            rates[code] = {"rate": _rate(value, f"line {line}"), "as_of": as_of}
    if not rates:
        raise ProviderError("no observations")
    return rates


class Provider:
    """One rates provider: its id, its outgoing connection's name, its parser."""

    def __init__(self, id, connection, parse):
        self.id, self.connection, self.parse = id, connection, parse


#: In order of preference when two agree on freshness and date.
PROVIDERS = (
    Provider("ecb", "ECB", parse_ecb_daily),
    Provider("ecb-sdmx", "ECB-SDMX", parse_sdmx_csv),
    Provider("frankfurter", "Frankfurter", parse_frankfurter),
)


# -- merging ----------------------------------------------------------------------------------


def merge(providers, order=tuple(p.id for p in PROVIDERS)):
    """One entry per currency from ``{provider: {"ok", "rates"}}`` snapshots.

    :return: ``{currency: {currency, rate, provider, as_of, is_stale}}``, sorted.
    """
    best = {}
    for rank, pid in enumerate(order):
        snapshot = providers.get(pid)
        if not snapshot:
            continue
        stale = not snapshot["ok"]
        for code, entry in snapshot["rates"].items():
            key = (not stale, entry["as_of"], -rank)
            if code not in best or key > best[code][0]:
                best[code] = (key, {"currency": code, "rate": entry["rate"], "provider": pid,
                                    "as_of": entry["as_of"], "is_stale": stale})
    return {code: best[code][1] for code in sorted(best)}


def changes(previous, current):
    """Currencies whose rate is new or differs: ``[(entry, previous rate or None)]``."""
    found = []
    for code, entry in current.items():
        old = previous.get(code)
        if old is None or old["rate"] != entry["rate"]:
            found.append((entry, None if old is None else old["rate"]))
    return found


# -- refreshing ---------------------------------------------------------------------------------

_in_flight = weakref.WeakKeyDictionary()     # resources → callers waiting on the refresh under way
_warned = weakref.WeakKeyDictionary()        # resources → {warnings already logged}
_last_state = weakref.WeakKeyDictionary()    # resources → this node's last state (cache fallback)


def _warn_once(service, key, text, **fields):
    seen = _warned.setdefault(service.resources, set())
    if key not in seen:
        seen.add(key)
        service.logger.warn(text, **fields)


def _cache(service):
    """The node's cache, or None (then every call fetches; said once)."""
    cache = service.resources.cache
    if cache is None:
        _warn_once(service, "cache", "rates: no cache is configured; every rates.get fetches")
    return cache


def _key(code):
    return f"{CACHE_KEY}:{code}"


async def _cached(service, keys):
    """``{key: value}`` of those ``keys`` in the cache; ``{}`` without one or when it fails."""
    cache = _cache(service)
    if cache is None:
        return {}
    try:
        return await cache.get_many(keys)
    except Exception as exc:  # the cache contract says failures are misses; be safe anyway
        service.logger.warn("rates: cache read failed: {error}", error=str(exc))
        return {}


async def _fetch(service, provider):
    """``{"ok", "error", "fetched_at", "rates"}`` for one provider; never raises."""
    try:
        connection = service.out.http[provider.connection]
    except NoSuchConnection:
        _warn_once(service, provider.id, "rates: no outgoing http connection {name}; provider "
                   "{provider} skipped", name=provider.connection, provider=provider.id)
        return None
    try:
        result = await connection.request()
        rates = provider.parse(result.data)
    except ProviderError as exc:
        error = f"malformed payload: {exc}"
    except Exception as exc:
        error = getattr(exc, "problem", None) or str(exc) or type(exc).__name__
    else:
        return {"ok": True, "error": None, "fetched_at": clock(), "rates": rates}
    service.logger.warn("rates: provider {provider} failed: {error}", provider=provider.id, error=error)
    return {"ok": False, "error": error, "fetched_at": None, "rates": {}}


async def refresh(service):
    """Fetch, merge, store and publish; the new snapshot plus ``changed``.

    Concurrent callers on one node share the refresh under way.
    """
    waiting = _in_flight.get(service.resources)
    if waiting is not None:
        follower = defer.Deferred()
        waiting.append(follower)
        return await follower
    waiting = _in_flight[service.resources] = []
    try:
        snapshot = await _refresh(service)
    except Exception:
        failure = Failure()
        for follower in waiting:
            follower.errback(failure)
        raise
    finally:
        del _in_flight[service.resources]
    for follower in waiting:
        follower.callback(snapshot)
    return snapshot


async def _refresh(service):
    # The cache's state is the cluster's; without a cache (or when it fails) this node's own.
    state = (await _cached(service, [STATE_KEY])).get(STATE_KEY) or _last_state.get(service.resources, {})
    old_providers = state.get("providers", {})
    fetched = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(_fetch(service, p)) for p in PROVIDERS])
    providers = {}
    for provider, result in zip(PROVIDERS, fetched):
        if result is None:
            continue
        if not result["ok"]:                # keep what it said last time, marked stale
            kept = old_providers.get(provider.id) or {}
            result["rates"] = kept.get("rates", {})
            result["fetched_at"] = kept.get("fetched_at")
        providers[provider.id] = result
    merged = merge(providers)
    snapshot = {"base": BASE, "refreshed_at": clock(), "currencies": list(merged)}
    changed = changes(state.get("rates", {}), merged)
    state = _last_state[service.resources] = {"providers": providers, "rates": merged}
    if _cache(service) is not None:
        await _store(service, snapshot, merged, state)
    return {**snapshot, "rates": merged, "providers": providers,
            "changed": _publish(service, changed)}


async def _store(service, snapshot, merged, state):
    """Each currency, then the state, then the snapshot naming them (readers never miss one)."""
    cache = service.cache
    try:
        await defer.gatherResults([defer.maybeDeferred(cache.set, _key(code), entry, ttl=CACHE_TTL)
                                   for code, entry in merged.items()], consumeErrors=True)
        await cache.set(STATE_KEY, state, ttl=CACHE_TTL)
        await cache.set(CACHE_KEY, snapshot, ttl=CACHE_TTL)
    except Exception as exc:
        error = getattr(exc, "subFailure", None)
        service.logger.warn("rates: cache write failed: {error}",
                            error=error.getErrorMessage() if error is not None else str(exc))


def _publish(service, changed):
    """Publish each change to ``rates.EUR.<CUR>`` (and AMQP); the currencies changed.

    Publications are not waited for (an AMQP broker that is down must not
    hold up a refresh); failures are logged in one line per refresh.
    """
    if not changed:
        return []
    sends = []
    can_publish = service.resources.pubsub is not None
    if not can_publish:
        _warn_once(service, "pubsub", "rates: pub/sub is not configured; rate changes are not published")
    amqp = service.out.amqp
    outgoing = amqp.get(AMQP_OUTGOING)
    for entry, old in changed:
        message = {"base": BASE, "currency": entry["currency"], "rate": entry["rate"],
                   "previous": old, "provider": entry["provider"], "as_of": entry["as_of"]}
        topic = f"rates.{BASE}.{entry['currency']}"
        if can_publish:
            sends.append(defer.maybeDeferred(service.publish, topic, message))
        if outgoing is not None:
            sends.append(defer.maybeDeferred(outgoing.publish, message, routing_key=topic))
    if sends:
        defer.DeferredList(sends, consumeErrors=True).addCallback(_log_failures, service, len(sends))
    return [entry["currency"] for entry, _ in changed]


def _log_failures(results, service, total):
    failed = [result for ok, result in results if not ok]
    if failed:
        service.logger.warn("rates: {count} of {total} publications failed, first: {error}",
                            count=len(failed), total=total, error=failed[0].getErrorMessage())


# -- the services -------------------------------------------------------------------------------


class RefreshRates(Service):
    """Fetch all providers, merge, cache and publish changes (the scheduler runs it)."""

    name = "rates.refresh"

    class SimpleIO:
        output_required = (Float("refreshed_at"), Int("currency_count"), List("changed"),
                           List("providers_ok"), List("providers_failed"))

    async def handle(self):
        snapshot = await refresh(self)
        providers = snapshot["providers"]
        self.response.payload = {
            "refreshed_at": snapshot["refreshed_at"], "currency_count": len(snapshot["rates"]),
            "changed": snapshot["changed"],
            "providers_ok": sorted(p for p, s in providers.items() if s["ok"]),
            "providers_failed": sorted(p for p, s in providers.items() if not s["ok"])}


def requested_currencies(values):
    """``["USD,GBP", "jpy"]`` → ``["USD", "GBP", "JPY"]``; a ValidationError names bad codes
    (and refuses more than :data:`MAX_CURRENCIES` of them)."""
    codes = {}  # a dict keeps the order and finds a repeat at once
    for value in values or ():
        for code in str(value).split(","):
            code = code.strip().upper()
            if code:
                codes[code] = None
    if len(codes) > MAX_CURRENCIES:
        raise ValidationError.of([{"field": "currency",
                                   "problem": f"at most {MAX_CURRENCIES} currencies at a time"}])
    codes = list(codes)
    bad = [c for c in codes if not _CURRENCY.match(c)]
    if bad:
        raise ValidationError.of([{"field": "currency",
                                   "problem": f"not a currency code: {', '.join(bad)}"}])
    return codes


class Currencies(List):
    """Currency codes: a list, each item one code or several separated by commas (blanks are
    skipped, any case)."""

    __slots__ = ()
    schema = {"type": "array", "description": f"At most {MAX_CURRENCIES} codes in all", "items": {
        "type": "string", "pattern": r"^\s*([A-Za-z]{3}\s*)?(,\s*([A-Za-z]{3}\s*)?)*$"}}


class GetRates(Service):
    """EUR exchange rates, one row per currency, from the cache (fetched on a miss).

    Input ``currencies`` or ``currency``: one code, a comma-separated list or a list (none =
    every currency); ``max_age``: refresh first when the cached rates are older (seconds).
    """

    name = "rates.get"

    class SimpleIO:
        input_optional = (Currencies("currencies"), Currencies("currency"),
                          Int("max_age", default=600, min=0))
        output_required = ("currency", Float("rate"), "provider", "as_of", Bool("is_stale"))
        output_repeated = True

    async def handle(self):
        given = self.request.input
        wanted = requested_currencies([*(given.currencies or ()), *(given.currency or ())])
        rates = await self._from_cache(wanted, self.request.input.max_age)
        if rates is None:                   # a miss, or nobody refreshed it lately
            rates = (await refresh(self))["rates"]
            if not rates:
                raise ServiceUnavailable("No exchange rates available: no provider has answered yet")
        unknown = [c for c in wanted if c not in rates]
        if unknown:
            raise NotFound(f"No rate for {', '.join(unknown)}", errors=[
                {"field": "currency", "problem": f"no rate for {code}"} for code in unknown])
        self.response.payload = [rates[c] for c in (wanted or rates)]

    async def _from_cache(self, wanted, max_age):
        """``{currency: entry}`` from the cache (every one when none is wanted), or None if a
        refresh is due: no snapshot, one older than ``max_age``, or an entry gone missing."""
        found = await _cached(self, [CACHE_KEY, *map(_key, wanted)])
        snapshot = found.get(CACHE_KEY)
        if not snapshot or clock() - snapshot["refreshed_at"] > max_age:
            return None
        known = snapshot["currencies"]
        codes = [c for c in wanted if c in known] if wanted else known
        if not wanted:
            found = await _cached(self, list(map(_key, codes)))
        rates = {c: found.get(_key(c)) for c in codes}
        return None if None in rates.values() else rates
