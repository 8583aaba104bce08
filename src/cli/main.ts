// The `ctxsparse` command: one file per subcommand, each exporting `register(program)`.
import { Command, CommanderError } from 'commander';
import { CtxError } from '../errors.js';
import * as benchCmd from './bench.js';
import * as calibrateCmd from './calibrate.js';
import * as calibrateHeadCmd from './calibrate-head.js';
import * as chatCmd from './chat.js';
import * as evalCmd from './eval.js';
import * as sweepCmd from './sweep.js';
import * as generateCmd from './generate.js';
import * as inspectCmd from './inspect.js';
import * as modelsCmd from './models.js';
import * as perplexityCmd from './perplexity.js';
import * as pullCmd from './pull.js';
import * as serveCmd from './serve.js';
import * as tokenizeCmd from './tokenize.js';

type CommandModule = { register: (program: Command) => void };

// Add one line per subcommand module.
const commands: CommandModule[] = [pullCmd, modelsCmd, inspectCmd, tokenizeCmd, generateCmd, chatCmd, perplexityCmd, benchCmd, calibrateCmd, calibrateHeadCmd, evalCmd, sweepCmd, serveCmd];

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('ctxsparse')
    .description('LLM inference with contextual sparsity: run GGUF models (SmolLM2, Qwen2.5, Gemma 3, Llama) from Node.js')
    .showHelpAfterError()
    .exitOverride();
  for (const c of commands) c.register(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode;
      return;
    }
    if (e instanceof CtxError) {
      process.stderr.write(`error: ${e.message}\n`);
      process.exitCode = 1;
      return;
    }
    throw e;
  }
}
