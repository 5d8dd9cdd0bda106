/**
 * Text from the network (file names above all) shown on a terminal: control characters (terminal
 * escapes start with ESC or CSI), DEL, line and paragraph separators, and the direction marks and
 * overrides that can disguise a name are never written raw.
 */
// C0 and C1 controls, DEL, line and paragraph separators, direction marks, embeddings, overrides, isolates
export const UNSAFE_CHARS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/
const UNSAFE_GLOBAL = new RegExp(UNSAFE_CHARS.source, 'g')
const escaped = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`

/** A name made safe for showing in a terminal: control, separator and direction characters escaped as \\uXXXX (and backslashes doubled, so an escape cannot be faked). */
export function printable (name: string): string {
  return name.replace(/\\/g, '\\\\').replace(UNSAFE_GLOBAL, escaped)
}

/** A name in a message: printable, in double quotes. */
export function quoted (name: string): string { return `"${printable(name)}"` }

/** A whole message made safe for a terminal (what names it holds are quoted already; nothing else is doubled). */
export function terminalSafe (text: string): string { return text.replace(UNSAFE_GLOBAL, escaped) }
