/// <reference types="vitest" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The gateway serves the build: index.html for the app's routes, the assets under /ui/.
// Output goes into the Python package (services/api/static/app, not committed) so an installed
// gateway carries its UI; scripts/setup.sh builds it when an input changed.
export default defineConfig({
  base: "/ui/",
  plugins: [react()],
  build: {
    outDir: "../services/api/static/app",
    emptyOutDir: true,
    // One small app: no source maps shipped, warnings only past 500 kB.
    sourcemap: false,
    target: "es2020",
  },
  test: {
    environment: "jsdom",
    // Logic tests (*.test.ts) need no DOM: Node is several times faster to set up than jsdom.
    environmentMatchGlobs: [["src/**/*.test.ts", "node"]],
    globals: true,
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test/setup.ts"],
  },
});
