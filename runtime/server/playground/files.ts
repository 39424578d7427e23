/**
 * The playground's static files, bundled as text (no build step).
 *
 * @module
 */
import html from "./index.html" with { type: "text" };
import js from "./playground.js" with { type: "text" };
import css from "./playground.css" with { type: "text" };

/** A static file: body and Content-Type. */
export interface StaticFile {
  /** The file's text. */
  body: string;
  /** Its Content-Type. */
  type: string;
}

/** The playground's files by URL path. */
export const PLAYGROUND_FILES: Readonly<Record<string, StaticFile>> = {
  "/": { body: html, type: "text/html; charset=utf-8" },
  "/playground.js": { body: js, type: "text/javascript; charset=utf-8" },
  "/playground.css": { body: css, type: "text/css; charset=utf-8" },
};
