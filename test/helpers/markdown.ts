// Reading the project's Markdown the way the docs tests need it: fenced code
// blocks with their language and line, and a shell command line split into
// arguments as sh would (quotes, backslash-newline continuations).

/** A fenced code block of a Markdown file. */
export interface CodeBlock {
  /** The info string after the opening fence (`ts`, `sh`, ``), first word only. */
  lang: string;
  /** The block's text, without the fences. */
  text: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The nearest heading above the block (without its #s). */
  heading: string;
}

/** Every fenced (```) code block of `markdown`, in order. */
export function codeBlocks(markdown: string): CodeBlock[] {
  const lines = markdown.split('\n');
  const out: CodeBlock[] = [];
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    const h = /^#{1,6}\s+(.*)$/.exec(l);
    if (h) {
      heading = h[1]!.trim();
      continue;
    }
    const open = /^(\s*)```(\S*)/.exec(l);
    if (!open) continue;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !/^\s*```\s*$/.test(lines[j]!)) body.push(lines[j++]!);
    if (j >= lines.length) throw new Error(`unterminated code block at line ${i + 1}`);
    out.push({ lang: open[2]!.split(/[{,]/)[0]!, text: body.join('\n'), line: i + 1, heading });
    i = j;
  }
  return out;
}

/**
 * Splits one shell command line into words: single and double quotes,
 * backslash escapes and backslash-newline continuations, as POSIX sh does
 * for the simple commands the README shows (no expansions). Stops at an
 * unquoted `&`, `;` or newline: returns the first command only.
 */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\') {
      const n = line[i + 1];
      i++;
      if (n === '\n' || n === undefined) continue;
      cur += n;
      inWord = true;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error('unterminated single quote');
      cur += line.slice(i + 1, end);
      i = end;
      inWord = true;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < line.length && line[j] !== '"'; j++) {
        if (line[j] === '\\' && /["\\$`]/.test(line[j + 1] ?? '')) j++;
        cur += line[j];
      }
      if (j >= line.length) throw new Error('unterminated double quote');
      i = j;
      inWord = true;
    } else if (c === '&' || c === ';' || c === '\n') {
      break;
    } else if (c === ' ' || c === '\t') {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

/** The commands of a shell block: continuation lines joined, comments and blank lines dropped. */
export function shellCommands(block: string): string[][] {
  const joined = block.replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map(shellWords);
}
