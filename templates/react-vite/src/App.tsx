import { useState } from 'react'
import { Greeting } from '@/components/Greeting'

export default function App() {
  const [count, setCount] = useState(0)
  return (
    <main className="app">
      <Greeting name="React + Vite" />
      <button type="button" onClick={() => setCount((value) => value + 1)}>
        clicked {count} {count === 1 ? 'time' : 'times'}
      </button>
    </main>
  )
}
