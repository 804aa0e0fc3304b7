// Placeholder until the frontend bundle (built from frontend/ by `npm run build`) replaces this file.
export async function render() {
  const response = await fetch('./runs');
  const body = await response.json();
  const pre = document.createElement('pre');
  pre.textContent = JSON.stringify(body, null, 2);
  document.body.appendChild(pre);
}
