import { defineConfig } from "vite";

// Relative asset URLs: the site works under any prefix (oss://bucket/<prefix>/ behind a CDN path).
export default defineConfig({
  base: "./",
});
