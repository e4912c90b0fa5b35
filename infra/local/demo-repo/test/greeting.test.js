import assert from 'node:assert/strict';
import { test } from 'node:test';
import { greeting } from '../src/greeting.js';

test('greets someone by name', () => {
  assert.equal(greeting('Ada'), 'Hello, Ada!');
});

test('greets the world without a name', () => {
  assert.equal(greeting(undefined), 'Hello, world!');
  assert.equal(greeting('  '), 'Hello, world!');
});
