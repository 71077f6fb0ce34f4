/**
 * Parses the `Retry-After` response header (RFC 9110 §10.2.3) into a delay in milliseconds.
 *
 * Why our own parser: `Date.parse` accepts whatever V8 happens to understand ("2020-01-01",
 * "Tue, 99 Foo 2020" in some versions, bare numbers as years), so a garbage header could turn
 * into a plausible wait. Here a value is either one of the grammar's forms, checked field by
 * field, or it is ignored: garbage never changes what the retry does.
 */

const MS_PER_SECOND = 1_000;

/** `delta-seconds = 1*DIGIT`, surrounded by optional whitespace (OWS is SP / HTAB). */
const DELTA_SECONDS = /^[ \t]*(\d+)[ \t]*$/;

const MONTH = '(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
const SHORT_DAY = '(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)';
const LONG_DAY = '(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)';
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})';

// The three HTTP-date forms of RFC 9110 §5.6.7. Names are case-sensitive there (%s"Mon"), and
// the weekday is not cross-checked with the date: a wrong weekday is a sender's typo that leaves
// the instant unambiguous, and every mainstream parser ignores it too.
/** IMF-fixdate, the one senders must use: `Sun, 06 Nov 1994 08:49:37 GMT`. */
const IMF_FIXDATE = new RegExp(`^[ \\t]*${SHORT_DAY}, (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT[ \\t]*$`);
/** Obsolete RFC 850 form, two-digit year: `Sunday, 06-Nov-94 08:49:37 GMT`. */
const RFC850_DATE = new RegExp(`^[ \\t]*${LONG_DAY}, (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT[ \\t]*$`);
/** ANSI C asctime() form, day padded with a space, no zone (UTC): `Sun Nov  6 08:49:37 1994`. */
const ASCTIME_DATE = new RegExp(`^[ \\t]*${SHORT_DAY} ${MONTH} ( \\d|\\d{2}) ${TIME} (\\d{4})[ \\t]*$`);

const MONTHS: Readonly<Record<string, number>> = {
  Jan: 0,
  Feb: 1,
  Mar: 2,
  Apr: 3,
  May: 4,
  Jun: 5,
  Jul: 6,
  Aug: 7,
  Sep: 8,
  Oct: 9,
  Nov: 10,
  Dec: 11,
};

/**
 * The delay a `Retry-After` header asks for.
 *
 * @param value - the header as undici hands it over: a string, or an array when the header was
 *   repeated (the first one wins, as for any singleton field received more than once).
 * @param nowMs - the current wall-clock time (`Date.now()`), against which an HTTP-date is measured.
 * @returns milliseconds to wait: `0` for a date in the past, the full value for a huge
 *   delta-seconds (possibly `Infinity` for an absurd digit string — the caller compares with its
 *   cap, nothing is clamped here), or `undefined` when the header is absent or not valid.
 */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number): number | undefined {
  const header = Array.isArray(value) ? value[0] : value;
  if (typeof header !== 'string') return undefined;

  const delta = DELTA_SECONDS.exec(header);
  if (delta !== null) return Number(delta[1]) * MS_PER_SECOND;

  const date = parseHttpDate(header, nowMs);
  if (date === undefined) return undefined;
  return date > nowMs ? date - nowMs : 0;
}

/** Epoch milliseconds of an HTTP-date in any of its three forms, or `undefined`. */
function parseHttpDate(text: string, nowMs: number): number | undefined {
  let match = IMF_FIXDATE.exec(text);
  if (match !== null) {
    const [, day, month, year, hour, minute, second] = match;
    return utc(Number(year), month!, Number(day), hour!, minute!, second!);
  }
  match = RFC850_DATE.exec(text);
  if (match !== null) {
    const [, day, month, year, hour, minute, second] = match;
    return utc(expandTwoDigitYear(Number(year), nowMs), month!, Number(day), hour!, minute!, second!);
  }
  match = ASCTIME_DATE.exec(text);
  if (match !== null) {
    const [, month, day, hour, minute, second, year] = match;
    return utc(Number(year), month!, Number(day), hour!, minute!, second!);
  }
  return undefined;
}

/**
 * RFC 9110 §5.6.7: a two-digit year that "appears to be more than 50 years in the future" is the
 * most recent past year with those digits. Symmetrically, one more than 50 years in the past is
 * the next century's, so the result always lies within 50 years of now.
 */
function expandTwoDigitYear(twoDigits: number, nowMs: number): number {
  const currentYear = new Date(nowMs).getUTCFullYear();
  const year = currentYear - (currentYear % 100) + twoDigits;
  if (year > currentYear + 50) return year - 100;
  if (year <= currentYear - 50) return year + 100;
  return year;
}

/**
 * Epoch milliseconds of a calendar date, or `undefined` when a field is out of range. A plain
 * `Date.UTC` would roll "31 Feb" into March and read years 0–99 as 1900–1999, so the date is set
 * field by field and the month checked afterwards. A second of 60 is allowed: the grammar permits
 * a leap second, which lands on the next minute.
 */
function utc(
  year: number,
  monthName: string,
  day: number,
  hourText: string,
  minuteText: string,
  secondText: string,
): number | undefined {
  const month = MONTHS[monthName]!;
  const hour = Number(hourText);
  const minute = Number(minuteText);
  const second = Number(secondText);
  if (day < 1 || hour > 23 || minute > 59 || second > 60) return undefined;
  const date = new Date(0);
  date.setUTCFullYear(year, month, day);
  if (date.getUTCMonth() !== month) return undefined;
  date.setUTCHours(hour, minute, second, 0);
  return date.getTime();
}
