// Chat prompts: the GGUF's own `tokenizer.chat_template` (Jinja) rendered with @huggingface/jinja.

import { Template } from '@huggingface/jinja';
import { CtxError } from '../errors.js';
import type { Model } from '../model/load.js';

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant' | string;
  readonly content: string;
}

const templates = new WeakMap<Model, Template>();

function compiled(model: Model): Template {
  let t = templates.get(model);
  if (!t) {
    if (!model.chatTemplate) throw new CtxError(`${model.path}: the model has no chat template (tokenizer.chat_template); use a plain prompt`);
    try {
      t = new Template(model.chatTemplate);
    } catch (e) {
      throw new CtxError(`${model.path}: cannot parse tokenizer.chat_template: ${(e as Error).message}`);
    }
    templates.set(model, t);
  }
  return t;
}

/** Render a conversation to prompt text, ending with the assistant's turn opened. */
export function renderChat(model: Model, messages: readonly ChatMessage[], addGenerationPrompt = true): string {
  const tok = model.tokenizer;
  const special = (id: number | undefined) => (id === undefined ? '' : tok.tokenText(id));
  try {
    return compiled(model).render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: special(tok.bos),
      eos_token: special(tok.eos),
    });
  } catch (e) {
    if (e instanceof CtxError) throw e;
    throw new CtxError(`${model.path}: rendering the chat template failed: ${(e as Error).message}`);
  }
}

/** Token ids of a rendered conversation: special tokens parsed, BOS only if the template did not write one. */
export function chatPromptIds(model: Model, messages: readonly ChatMessage[]): number[] {
  const text = renderChat(model, messages);
  const tok = model.tokenizer;
  const ids = tok.encode(text, { parseSpecial: true });
  // llama.cpp warns about a doubled BOS when the template already starts with it; we drop the extra one
  if (tok.bos !== undefined && ids.length > 1 && ids[0] === tok.bos && ids[1] === tok.bos) ids.shift();
  return ids;
}
