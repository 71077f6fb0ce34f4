import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseRetryAfter } from '../../src/http/retry-after.js';

/** 1994-11-06 08:49:00 UTC: 37 s before the RFC's example date. */
const NOW = Date.UTC(1994, 10, 6, 8, 49, 0);

describe('parseRetryAfter', () => {
  const cases: Array<[string, string | string[] | undefined, number | undefined]> = [
    // absent
    ['absent', undefined, undefined],
    ['empty', '', undefined],
    ['only whitespace', ' \t', undefined],
    ['an empty repeated header', [], undefined],
    // delta-seconds
    ['zero', '0', 0],
    ['seconds', '2', 2_000],
    ['leading space', ' 2', 2_000],
    ['trailing space', '2 ', 2_000],
    ['tabs', '\t120\t', 120_000],
    ['leading zeros', '007', 7_000],
    ['huge, not clamped', '9999999999', 9_999_999_999_000],
    ['absurdly long', '9'.repeat(400), Number.POSITIVE_INFINITY],
    ['fraction', '1.5', undefined],
    ['negative', '-1', undefined],
    ['plus sign', '+2', undefined],
    ['unit', '2s', undefined],
    ['exponent', '1e3', undefined],
    ['hex', '0x10', undefined],
    ['two numbers', '2 2', undefined],
    ['non-ASCII digits', '٢', undefined],
    // HTTP-date, the three forms of RFC 9110 §5.6.7, all naming the same instant
    ['IMF-fixdate', 'Sun, 06 Nov 1994 08:49:37 GMT', 37_000],
    ['obsolete RFC 850', 'Sunday, 06-Nov-94 08:49:37 GMT', 37_000],
    ['asctime', 'Sun Nov  6 08:49:37 1994', 37_000],
    ['asctime, two-digit day', 'Wed Nov 16 08:49:37 1994', 10 * 86_400_000 + 37_000],
    ['surrounded by whitespace', ' Sun, 06 Nov 1994 08:49:37 GMT\t', 37_000],
    ['a leap second', 'Sun, 06 Nov 1994 08:49:60 GMT', 60_000],
    ['the weekday is not cross-checked', 'Mon, 06 Nov 1994 08:49:37 GMT', 37_000],
    ['now exactly', 'Sun, 06 Nov 1994 08:49:00 GMT', 0],
    ['in the past', 'Sun, 06 Nov 1994 08:48:00 GMT', 0],
    ['long past', 'Thu, 01 Jan 1970 00:00:00 GMT', 0],
    // garbage
    ['a word', 'soon', undefined],
    ['day and month out of range', 'Tue, 99 Foo 2020', undefined],
    ['invalid month name', 'Sun, 06 Foo 1994 08:49:37 GMT', undefined],
    ['31 February', 'Sun, 31 Feb 1994 08:49:37 GMT', undefined],
    ['day zero', 'Sun, 00 Nov 1994 08:49:37 GMT', undefined],
    ['hour 24', 'Sun, 06 Nov 1994 24:00:00 GMT', undefined],
    ['minute 60', 'Sun, 06 Nov 1994 08:60:00 GMT', undefined],
    ['second 61', 'Sun, 06 Nov 1994 08:49:61 GMT', undefined],
    ['another zone', 'Sun, 06 Nov 1994 08:49:37 UTC', undefined],
    ['numeric offset', 'Sun, 06 Nov 1994 08:49:37 +0000', undefined],
    ['lower-case day name', 'sun, 06 Nov 1994 08:49:37 GMT', undefined],
    ['one-digit day in IMF-fixdate', 'Sun, 6 Nov 1994 08:49:37 GMT', undefined],
    ['two-digit year in IMF-fixdate', 'Sun, 06 Nov 94 08:49:37 GMT', undefined],
    ['short day name in RFC 850', 'Sun, 06-Nov-94 08:49:37 GMT', undefined],
    ['four-digit year in RFC 850', 'Sunday, 06-Nov-1994 08:49:37 GMT', undefined],
    ['asctime with a single space before a one-digit day', 'Sun Nov 6 08:49:37 1994', undefined],
    ['ISO 8601, which Date.parse accepts', '1994-11-06T08:49:37Z', undefined],
    ['digits are delta-seconds, never a year as Date.parse reads them', '1995', 1_995_000],
    ['trailing garbage', 'Sun, 06 Nov 1994 08:49:37 GMT x', undefined],
    // repeated header: the first value wins
    ['repeated', ['5', '10'], 5_000],
    ['repeated, first is garbage', ['soon', '5'], undefined],
  ];

  for (const [name, value, expected] of cases) {
    test(`${name}: ${JSON.stringify(value)} → ${expected}`, () => {
      assert.equal(parseRetryAfter(value, NOW), expected);
    });
  }

  test('an HTTP-date is measured to the millisecond against now', () => {
    assert.equal(parseRetryAfter('Sun, 06 Nov 1994 08:49:37 GMT', NOW + 36_500), 500);
  });

  test('two-digit years land within 50 years of now (RFC 9110 §5.6.7)', () => {
    const in2025 = Date.UTC(2025, 0, 1);
    const at = (year: number) => Date.UTC(year, 0, 1) - in2025;
    const rfc850 = (yy: string) => `Sunday, 01-Jan-${yy} 00:00:00 GMT`;
    assert.equal(parseRetryAfter(rfc850('30'), in2025), at(2030));
    assert.equal(parseRetryAfter(rfc850('75'), in2025), at(2075), 'exactly 50 years ahead is still ahead');
    assert.equal(parseRetryAfter(rfc850('76'), in2025), 0, 'more than 50 years ahead is 1976, the past');
    assert.equal(parseRetryAfter(rfc850('94'), in2025), 0);

    const in2099 = Date.UTC(2099, 0, 1);
    assert.equal(
      parseRetryAfter(rfc850('00'), in2099),
      Date.UTC(2100, 0, 1) - in2099,
      '00 near 2100 is 2100',
    );
  });
});
