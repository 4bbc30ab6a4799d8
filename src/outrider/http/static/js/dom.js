// Building DOM nodes safely. Every value from the server (queue names, replies,
// addresses come from strangers) goes in as text or as an attribute, never as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

/** h("tag#id.class", {attrs, on: {click: fn}}, ...children): an element; strings become text. */
export function h(spec, props, ...children) {
  const [head, ...classes] = spec.split(".");
  const [tag, id] = head.split("#");
  const node = document.createElement(tag || "div");
  if (id) node.id = id;
  if (classes.length) node.className = classes.join(" ");
  apply(node, props);
  append(node, children);
  return node;
}

/** The same for SVG elements (attributes only, no properties). */
export function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

function apply(node, props) {
  if (!props) return;
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") {
      for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    } else if (name === "class") {
      node.className = value;
    } else if (name === "text") {
      node.textContent = String(value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (name.startsWith("aria-") || name.startsWith("data-") || name === "role") {
      node.setAttribute(name, String(value));
    } else if (name === "href" || name === "title" || name === "type" || name === "for") {
      node.setAttribute(name, String(value));
    } else {
      node[name] = value;
    }
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of ``node``. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/**
 * Keep ``container``'s children in step with ``items`` without rebuilding unchanged ones:
 * rows keep their nodes (and the user's hover, focus and scroll) across polls. A row is
 * rebuilt when its signature (``sig(item)``) changes.
 */
export function syncList(container, items, key, sig, render) {
  const old = new Map();
  for (const child of container.children) {
    if (child.dataset.key !== undefined) old.set(child.dataset.key, child);
  }
  const wanted = [];
  for (const item of items) {
    const k = String(key(item));
    const signature = sig(item);
    let node = old.get(k);
    if (!node || node.dataset.sig !== signature) {
      node = render(item);
      node.dataset.key = k;
      node.dataset.sig = signature;
    }
    wanted.push(node);
  }
  // Reorder/replace in place; nodes already at their position stay untouched.
  wanted.forEach((node, i) => {
    if (container.children[i] !== node) container.insertBefore(node, container.children[i] || null);
  });
  while (container.children.length > wanted.length) container.lastElementChild.remove();
}
