import { createServer } from 'node:http';
import { greeting } from './greeting.js';

const send = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

/** The service's routes. */
export const handle = (req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/') return send(res, 200, { service: 'demo-app' });
  if (req.method === 'GET' && url.pathname === '/greet') {
    return send(res, 200, { message: greeting(url.searchParams.get('name')) });
  }
  send(res, 404, { error: 'not found' });
};

export const createApp = () => createServer(handle);
