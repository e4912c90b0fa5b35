/**
 * The headers the console is served with, the same locally and behind CloudFront. The CSP allows
 * scripts and styles from the console's own origin only (the build emits no inline script), and
 * connections to the API, its WebSocket stream and the sign-in provider.
 */
export const contentSecurityPolicy = (connectTo: string[]) =>
  [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src 'self' ${connectTo.join(' ')}`,
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');

/** The response headers besides the CSP (CloudFront's security headers policy sets the same). */
export const SECURITY_HEADERS = {
  'strict-transport-security': 'max-age=63072000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'strict-origin-when-cross-origin',
} as const;
