/** A greeting for a name; without one (or only spaces), the world is greeted. */
export const greeting = (name) => `Hello, ${name?.trim() || 'world'}!`;
