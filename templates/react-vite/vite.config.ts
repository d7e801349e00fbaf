import { defineConfig } from 'vite'
import react from '@vitejs/plugin-react'

// base './': the preview is served under a path of its own, so asset URLs stay relative.
export default defineConfig({
  base: './',
  plugins: [react()],
  resolve: { alias: { '@': new URL('./src', import.meta.url).pathname } },
  build: { sourcemap: true },
})
