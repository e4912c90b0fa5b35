import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createApp } from '../src/app.js';

let server;
let base;

before(async () => {
  server = createApp();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => new Promise((resolve) => server.close(resolve)));

test('names the service', async () => {
  const res = await fetch(`${base}/`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { service: 'demo-app' });
});

test('greets the name it is given', async () => {
  const res = await fetch(`${base}/greet?name=Ada`);
  assert.deepEqual(await res.json(), { message: 'Hello, Ada!' });
});

test('answers 404 for anything else', async () => {
  const res = await fetch(`${base}/nope`);
  assert.equal(res.status, 404);
});
