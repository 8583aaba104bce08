// A user-facing error: its message is one line that names the file, key, tensor or flag at fault.
// The CLI prints `error: <message>` and exits with code 1; anything else is a bug and shows a stack.
export class CtxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CtxError';
  }
}

export function fail(message: string): never {
  throw new CtxError(message);
}
