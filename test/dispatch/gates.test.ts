import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import {
  type Gate,
  type GateTicket,
  gate,
  InvalidOptionError,
  pipeline,
  resilient,
  retry,
  timeout,
} from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// The public gate interface: what a gate of the user's is promised (one exit per admission, in
// reverse order, on every path; a cancel for a wait cut short) and what it may do (admit, hold,
// refuse, throw).

/** A gate that records every call, and holds every ticket until released by hand. */
function recorder(name: string, log: string[], hold = false) {
  const held: GateTicket[] = [];
  const definition: Gate<string> = {
    enter(ticket) {
      log.push(`${name}:enter:${ticket.attempt}`);
      if (hold) {
        held.push(ticket);
        ticket.wait(`${name}-permit`);
      } else {
        ticket.admit(`${name}-permit`);
      }
    },
    response(ticket, permit) {
      log.push(`${name}:response:${ticket.statusCode}:${ticket.outcome}:${permit}`);
    },
    exit(ticket, permit) {
      log.push(`${name}:exit:${ticket.outcome}:${permit}`);
    },
    cancel(_ticket, permit) {
      log.push(`${name}:cancel:${permit}`);
    },
  };
  return { stage: gate(definition), held };
}

describe('gates of your own', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());
  afterEach(() => upstream.reset());

  test('before retry a gate sees the request once, after it every attempt; exits run in reverse', async (t) => {
    upstream.setScript([
      { kind: 'respond', status: 503, body: 'busy' },
      { kind: 'respond', status: 200, body: 'ok' },
    ]);
    const log: string[] = [];
    const outer = recorder('outer', log);
    const inner = recorder('inner', log);
    const innermost = recorder('innermost', log);
    const dispatcher = resilient(
      new Agent(),
      pipeline([
        outer.stage,
        retry({ backoff: { initialDelay: 5, maxDelay: 5 }, budget: false }),
        inner.stage,
        innermost.stage,
      ]),
    );
    t.after(() => dispatcher.destroy());
    const res = await request(upstream.url('/'), { dispatcher });
    assert.equal(await res.body.text(), 'ok');
    assert.deepEqual(log, [
      'outer:enter:0',
      'inner:enter:1',
      'innermost:enter:1',
      'inner:response:503:failure:inner-permit',
      'innermost:response:503:failure:innermost-permit',
      'innermost:exit:failure:innermost-permit',
      'inner:exit:failure:inner-permit',
      'inner:enter:2',
      'innermost:enter:2',
      'inner:response:200:success:inner-permit',
      'innermost:response:200:success:innermost-permit',
      'outer:response:200:success:outer-permit',
      'innermost:exit:success:innermost-permit',
      'inner:exit:success:inner-permit',
      'outer:exit:success:outer-permit',
    ]);
    assert.equal(upstream.count(), 2);
  });

  test('a held ticket goes on when admitted later; an abort while held cancels it and exits the rest', async (t) => {
    upstream.setScript({ kind: 'respond', status: 200, body: 'ok' });
    const log: string[] = [];
    const outer = recorder('outer', log);
    const held = recorder('held', log, true);
    const dispatcher = resilient(new Agent(), pipeline([outer.stage, held.stage]));
    t.after(() => dispatcher.destroy());

    const first = request(upstream.url('/'), { dispatcher });
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(upstream.count(), 0, 'held: nothing sent');
    held.held[0]!.admit();
    assert.equal(await (await first).body.text(), 'ok');
    assert.equal(upstream.count(), 1);
    assert.ok(log.includes('held:exit:success:held-permit'), 'the permit given to wait() comes back');

    log.length = 0;
    const ac = new AbortController();
    const second = request(upstream.url('/'), { dispatcher, signal: ac.signal }).catch((e: Error) => e);
    await new Promise((resolve) => setTimeout(resolve, 20));
    ac.abort();
    const error = await second;
    assert.equal((error as Error).name, 'AbortError');
    assert.deepEqual(log, [
      'outer:enter:1',
      'held:enter:1',
      'held:cancel:held-permit',
      'outer:exit:neutral:outer-permit',
    ]);
    held.held[1]!.admit(); // too late: ignored, nothing is sent
    assert.equal(upstream.count(), 1);
  });

  test("refuse() fails the request with the gate's error and is never retried; a throw counts as a refusal", async (t) => {
    class Quota extends Error {}
    let entered = 0;
    const refusing = gate({
      enter(ticket) {
        entered++;
        if (entered === 1) ticket.refuse(new Quota('over quota'));
        else throw new Quota('thrown');
      },
      exit() {
        assert.fail('never admitted, never exited');
      },
    });
    const dispatcher = resilient(new Agent(), pipeline([retry({ budget: false }), refusing]));
    t.after(() => dispatcher.destroy());
    for (const message of ['over quota', 'thrown']) {
      const error = await request(upstream.url('/'), { dispatcher }).then(
        () => assert.fail('refused'),
        (e: Error) => e,
      );
      assert.ok(error instanceof Quota);
      assert.equal(error.message, message);
    }
    assert.equal(entered, 2, 'one attempt each: a refusal is an answer');
    assert.equal(upstream.count(), 0);
  });

  test("a total timeout listed after a gate fires inside it (a failure); one listed before it is nobody's verdict", async (t) => {
    upstream.setScript({ kind: 'hang' });
    const log: string[] = [];
    const before = recorder('before', log);
    const after = recorder('after', log);
    const dispatcher = resilient(
      new Agent(),
      pipeline([before.stage, timeout(50), after.stage, retry({ maxAttempts: 1 })]),
    );
    t.after(() => dispatcher.destroy());
    await request(upstream.url('/'), { dispatcher }).catch(() => {});
    assert.deepEqual(
      log.filter((l) => l.includes(':exit:')),
      ['after:exit:neutral:after-permit', 'before:exit:failure:before-permit'],
    );
  });

  test('bad gates and two retry stages are refused when the pipeline is made', () => {
    assert.throws(() => gate({} as Gate), InvalidOptionError);
    assert.throws(() => gate({ enter() {} } as unknown as Gate), /gate\.exit/);
    assert.throws(() => gate({ enter() {}, exit() {}, cancel: 1 } as unknown as Gate), /gate\.cancel/);
    assert.throws(
      () => pipeline([retry(), timeout(100), retry()]),
      (e: unknown) => e instanceof InvalidOptionError && /stages\[2\]/.test(e.message),
    );
  });
});
